// BattleScope: small progressive enhancements. Every page works without this file.
"use strict";
(function () {
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // Header search: autocomplete from /api/search/autocomplete.
  function hrefOf(h) {
    const id = encodeURIComponent(h.id);
    switch (h.type) {
      case "battle": return "/battles/" + id;
      case "alliance": return "/intel/alliances/" + id;
      case "corporation": return "/intel/corporations/" + id;
      case "character": return "/intel/characters/" + id;
      case "system": return "/systems/" + id;
      case "type": case "ship": case "ship_type": return "/types/" + id;
      default: return "/search?q=" + encodeURIComponent(h.name || "");
    }
  }
  function autocomplete() {
    const q = $("#q"), list = $("#ac");
    if (!q || !list) return;
    let timer = 0, seq = 0, sel = -1;
    const close = () => { list.hidden = true; list.innerHTML = ""; sel = -1; };
    q.addEventListener("input", () => {
      clearTimeout(timer);
      const text = q.value.trim();
      if (text.length < 2) return close();
      timer = setTimeout(async () => {
        const mine = ++seq;
        let html;
        try {
          const r = await fetch("/api/search/autocomplete?limit=8&q=" + encodeURIComponent(text));
          if (mine !== seq) return;
          if (r.status === 503) html = '<li class="muted"><a>search unavailable</a></li>';
          else if (!r.ok) return close();
          else {
            const body = await r.json();
            const hits = body.hits || [];
            html = hits.map((h) => '<li role="option"><a href="' + hrefOf(h) + '"><span class="tag">' + esc(h.type) + "</span>" + esc(h.name) + "</a></li>").join("");
            if (!html) return close();
          }
        } catch (e) { html = '<li class="muted"><a>search unavailable</a></li>'; }
        list.innerHTML = html; list.hidden = false; sel = -1;
      }, 150);
    });
    q.addEventListener("keydown", (e) => {
      const items = $$("li", list);
      if (list.hidden || !items.length) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        sel = (sel + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
        items.forEach((li, i) => li.classList.toggle("sel", i === sel));
      } else if (e.key === "Enter" && sel >= 0) {
        const a = $("a", items[sel]);
        if (a && a.href) { e.preventDefault(); location.href = a.href; }
      } else if (e.key === "Escape") close();
    });
    document.addEventListener("click", (e) => { if (!list.contains(e.target) && e.target !== q) close(); });
  }

  // Sortable tables: click a header with data-sort="n" (numeric) or "s" (text).
  function sortable(root) {
    $$("table.sortable", root).forEach((t) => {
      $$("th[data-sort]", t).forEach((th, col) => {
        th.addEventListener("click", () => {
          const numeric = th.dataset.sort === "n";
          const dir = th.dataset.dir === "asc" ? "desc" : "asc";
          th.dataset.dir = dir;
          const body = t.tBodies[0];
          const rows = Array.from(body.rows);
          const key = (r) => { const s = r.cells[col] ? r.cells[col].textContent.trim() : ""; return numeric ? parseFloat(s) || 0 : s.toLowerCase(); };
          rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (dir === "asc" ? 1 : -1); });
          rows.forEach((r) => body.appendChild(r));
        });
      });
    });
  }

  // An active battle refreshes itself: poll the revision, swap the report in place.
  function liveReport() {
    const rep = $("#report");
    if (!rep || !rep.dataset.live) return;
    const id = rep.dataset.id;
    setInterval(async () => {
      try {
        const r = await fetch("/api/battles/" + id);
        if (!r.ok) return;
        const b = await r.json();
        if (String(b.revision) === rep.dataset.revision && b.status === "active") return;
        const page = await fetch("/battles/" + b.id);
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        const fresh = doc.querySelector("#report");
        if (fresh) { rep.replaceWith(fresh); sortable(fresh); if (fresh.dataset.live) liveReport(); }
      } catch (e) { /* offline: try again next tick */ }
    }, 15000);
  }

  // The intel feed: new killmails appear at the top. live.js pushes them over the WebSocket
  // public feed; this polling only runs while that socket is not open (no notification service).
  function liveFeed() {
    const table = $("#feed");
    if (!table) return;
    const img = table.dataset.img;
    const body = table.tBodies[0];
    const params = new URLSearchParams(location.search);
    for (const [k, v] of Array.from(params)) if (!v) params.delete(k);
    const seen = new Set($$("tr[data-id]", body).map((r) => r.dataset.id));
    const row = (k) => {
      const tr = document.createElement("tr");
      tr.dataset.id = k.killmail_id;
      tr.className = "new";
      const ship = (k.ship_type_id ? '<img src="' + esc(img) + "/types/" + esc(k.ship_type_id) + '/icon?size=32" width="20" height="20" alt="" loading="lazy">' : "") + esc(k.ship_name);
      const sec = k.security == null ? "" : Number(k.security).toFixed(1);
      tr.innerHTML = "<td>" + esc(k.time) + "</td><td>" + ship + "</td><td>" + esc(k.victim_name) + (k.victim_alliance_name ? ' <small class="muted">' + esc(k.victim_alliance_name) + "</small>" : "") +
        '</td><td><span class="sec" style="color:' + esc(k.security_colour) + '">' + sec + "</span> " + esc(k.system_name) +
        '</td><td class="r"><a href="' + esc(k.zkb_url) + '" rel="noopener" target="_blank">' + esc(k.isk_text) + "</a></td>";
      return tr;
    };
    const tick = async () => {
      if (table.dataset.wsOpen === "1") return;
      try {
        const r = await fetch("/api/killmails/recent?" + params.toString());
        if (!r.ok) return;
        const items = (await r.json()).items || [];
        for (let i = items.length - 1; i >= 0; i--) {
          const k = items[i];
          if (seen.has(String(k.killmail_id)) || body.querySelector('tr[data-id="' + Number(k.killmail_id) + '"]')) continue;
          seen.add(String(k.killmail_id));
          body.insertBefore(row(k), body.firstChild);
          const empty = $("#feed-empty"); if (empty) empty.remove();
        }
        while (body.rows.length > 200) body.deleteRow(-1);
      } catch (e) { /* keep polling */ }
    };
    setInterval(tick, Number(table.dataset.interval || 5000));
    // Watchlists: saved filters in this browser.
    const out = $("#watchlists"), save = $("#watch-save");
    const load = () => { try { return JSON.parse(localStorage.getItem("bs-watch") || "[]"); } catch (e) { return []; } };
    const show = () => { const w = load(); if (out) out.innerHTML = w.length ? "Watchlists: " + w.map((q, i) => '<a href="/intel?' + esc(q) + '">#' + (i + 1) + "</a>").join(" ") : ""; };
    if (save) save.addEventListener("click", () => { const w = load(); const q = params.toString(); if (q && !w.includes(q)) { w.push(q); localStorage.setItem("bs-watch", JSON.stringify(w.slice(-10))); } show(); });
    show();
  }

  document.addEventListener("DOMContentLoaded", () => { autocomplete(); sortable(document); liveReport(); liveFeed(); });
})();

// Admin access rules: suggest alliances/corporations by name (the field also takes an id).
(function () {
  "use strict";
  document.querySelectorAll("input[data-entity]").forEach(function (input) {
    var list = input.list, timer = 0;
    if (!list) return;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var text = input.value.trim();
      if (text.length < 2 || /^\d+$/.test(text)) return;
      timer = setTimeout(function () {
        fetch("/api/search/autocomplete?limit=8&types=" + encodeURIComponent(input.dataset.entity) + "&q=" + encodeURIComponent(text))
          .then(function (r) { return r.ok ? r.json() : { hits: [] }; })
          .then(function (body) {
            list.innerHTML = "";
            (body.hits || []).forEach(function (h) {
              var o = document.createElement("option");
              o.value = h.name + " [" + h.id + "]";
              list.appendChild(o);
            });
          })
          .catch(function () {});
      }, 200);
    });
  });
})();
