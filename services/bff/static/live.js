// BattleScope live updates over the notification WebSockets (through the BFF: /api/ws and
// /api/ws/public), and name autocomplete for the notification forms. Every page works without
// this file: the intel feed falls back to polling (app.js), the notifications page to reloads.
"use strict";
(function () {
  const $ = (s, r) => (r || document).querySelector(s);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const isk = (v) => {
    const a = Math.abs(v || 0);
    const [d, s] = a >= 1e12 ? [1e12, "T"] : a >= 1e9 ? [1e9, "B"] : a >= 1e6 ? [1e6, "M"] : a >= 1e3 ? [1e3, "K"] : [1, ""];
    if (!s) return (v || 0).toFixed(0);
    return (a / d >= 100 ? (v / d).toFixed(0) : (v / d).toFixed(2)) + s;
  };
  // The client's security colour ramp (same as the server's view::security_colour).
  const SEC = ["#F00000", "#D73000", "#F04800", "#F06000", "#D77700", "#EFEF00", "#8FEF2F", "#00F000", "#00EF47", "#48F0C0", "#2FEFEF"];
  const secColour = (s) => SEC[Math.max(0, Math.min(10, Math.round((s || 0) * 10)))];
  const wsUrl = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

  // A socket that reconnects with backoff; `onState(open)` tells the page whether it is live.
  function socket(path, onMessage, onState) {
    let delay = 1000, ws = null, stopped = false;
    const connect = () => {
      try { ws = new WebSocket(wsUrl(path)); } catch (e) { onState(false); return; }
      ws.onopen = () => { delay = 1000; onState(true); };
      ws.onmessage = (ev) => { try { onMessage(JSON.parse(ev.data)); } catch (e) { /* ignore junk */ } };
      ws.onclose = () => {
        onState(false);
        if (stopped) return;
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 60000);
      };
    };
    connect();
    window.addEventListener("pagehide", () => { stopped = true; if (ws) ws.close(); });
  }

  // The intel feed: killmails pushed by the public feed, filtered server-side by the page's filters.
  function intelFeed() {
    const table = $("#feed");
    if (!table || !table.dataset.ws) return;
    const img = table.dataset.img;
    const body = table.tBodies[0];
    const p = new URLSearchParams(location.search);
    const of = [];
    const int = (k) => parseInt(p.get(k) || "", 10);
    if (p.get("security_type")) of.push({ type: "security_type", types: [p.get("security_type")] });
    if (int("region_id")) of.push({ type: "region", ids: [int("region_id")] });
    if (int("system_id")) of.push({ type: "system", ids: [int("system_id")] });
    if (int("alliance_id")) of.push({ type: "alliance", ids: [int("alliance_id")], role: "either" });
    if (p.get("ship_class")) of.push({ type: "ship_class", classes: [p.get("ship_class")], role: "victim" });
    const minIsk = parseFloat(p.get("min_isk") || "");
    if (minIsk > 0) of.push({ type: "min_isk", isk: minIsk });
    let path = table.dataset.ws;
    if (of.length) path += "?filter=" + encodeURIComponent(JSON.stringify({ type: "and", of: of }));
    const dot = $("#live-dot");
    socket(path, (m) => {
      if (m.type !== "killmail" || !m.killmail) return;
      const k = m.killmail, v = k.victim || {};
      if (body.querySelector('tr[data-id="' + Number(k.killmail_id) + '"]')) return;
      const tr = document.createElement("tr");
      tr.dataset.id = k.killmail_id;
      tr.className = "new";
      const ship = (v.ship_type_id ? '<img src="' + esc(img) + "/types/" + esc(v.ship_type_id) + '/icon?size=32" width="20" height="20" alt="" loading="lazy">' : "") + esc(v.ship || "");
      const sec = k.security == null ? "" : Number(k.security).toFixed(1);
      tr.innerHTML = "<td>" + esc(String(k.time || "").replace("T", " ").slice(0, 19)) + "</td><td>" + ship + "</td><td>" + esc(v.character || "") +
        (v.alliance ? ' <small class="muted">' + esc(v.alliance) + "</small>" : "") +
        '</td><td><span class="sec" style="color:' + secColour(k.security) + '">' + sec + "</span> " + esc(k.system || ("#" + k.system_id)) +
        '</td><td class="r"><a href="https://zkillboard.com/kill/' + Number(k.killmail_id) + '/" rel="noopener" target="_blank">' + esc(isk(k.isk)) + "</a></td>";
      body.insertBefore(tr, body.firstChild);
      const empty = $("#feed-empty"); if (empty) empty.remove();
      while (body.rows.length > 200) body.deleteRow(-1);
    }, (open) => {
      // While the socket is open app.js stops polling; when it drops, polling resumes.
      table.dataset.wsOpen = open ? "1" : "";
      if (dot) dot.title = open ? "live (WebSocket)" : "live (polling)";
    });
  }

  // The notifications page: the account's matches arrive at the top of the list.
  function notifications() {
    const table = $("#notes");
    if (!table || !table.dataset.ws) return;
    const body = table.tBodies[0];
    const csrf = table.dataset.csrf || "";
    socket(table.dataset.ws, (m) => {
      if (m.type !== "notification" || !m.notification) return;
      const n = m.notification, s = n.summary || {}, v = s.victim || {};
      if (body.querySelector('tr[data-id="' + Number(n.id) + '"]')) return;
      let text, href = "";
      if (n.kind === "killmail") {
        text = (v.character || "Someone") + " lost a " + (v.ship || "ship") + " in " + (s.system || ("#" + s.system_id)) + " (" + isk(s.isk) + ")";
        href = "https://zkillboard.com/kill/" + Number(s.killmail_id) + "/";
      } else if (n.kind === "battle") {
        text = "Battle " + s.battle_id + ": " + s.kills + " kills, " + isk(s.isk);
        href = "/battles/" + Number(s.battle_id);
      } else text = "Test notification for \u201c" + (s.subscription || "") + "\u201d";
      const tr = document.createElement("tr");
      tr.dataset.id = n.id;
      tr.className = "unread new";
      const when = String(n.created_at || "").replace("T", " ").slice(0, 16);
      tr.innerHTML = "<td>" + esc(when) + '</td><td><span class="tag">' + esc(n.kind) + "</span>" + (href ? '<a href="' + esc(href) + '" rel="noopener">' + esc(text) + "</a>" : esc(text)) +
        '</td><td><form method="post" action="/notifications/' + Number(n.id) + '/read" class="inline"><input type="hidden" name="csrf_token" value="' + esc(csrf) + '"><button type="submit" class="ghost">Mark read</button></form></td>';
      body.insertBefore(tr, body.firstChild);
      const empty = $("#notes-empty"); if (empty) empty.remove();
    }, (open) => { table.dataset.wsOpen = open ? "1" : ""; });
  }

  // Autocomplete for id fields: pick a name, its id is appended to the field.
  function idAutocomplete() {
    document.querySelectorAll("input[data-ac]").forEach((input) => {
      const list = document.createElement("ul");
      list.className = "ac"; list.hidden = true; list.setAttribute("role", "listbox");
      input.parentNode.appendChild(list);
      let timer = 0, seq = 0;
      input.addEventListener("input", () => {
        clearTimeout(timer);
        const last = input.value.split(",").pop().trim();
        if (last.length < 2 || /^\d+$/.test(last)) { list.hidden = true; return; }
        timer = setTimeout(async () => {
          const mine = ++seq;
          try {
            const r = await fetch("/api/search/autocomplete?limit=8&types=" + encodeURIComponent(input.dataset.ac) + "&q=" + encodeURIComponent(last));
            if (mine !== seq) return;
            if (!r.ok) { list.innerHTML = '<li class="muted"><a>search unavailable: enter ids</a></li>'; list.hidden = false; return; }
            // Hits name their collection ("systems", "ship_types"); data-ac names one entity.
            const want = input.dataset.ac, plural = want.endsWith("s") ? want : want + "s";
            const hits = ((await r.json()).hits || []).filter((h) => !want || h.type === want || h.type === plural);
            list.innerHTML = hits.map((h) => '<li role="option"><a href="#" data-id="' + esc(h.id) + '"><span class="tag">' + esc(h.type) + "</span>" + esc(h.name) + "</a></li>").join("");
            list.hidden = !hits.length;
          } catch (e) { list.hidden = true; }
        }, 150);
      });
      list.addEventListener("click", (e) => {
        const a = e.target.closest("a[data-id]");
        if (!a) return;
        e.preventDefault();
        const parts = input.value.split(",").map((x) => x.trim()).filter((x) => x);
        parts.pop();
        parts.push(a.dataset.id);
        input.value = parts.join(", ");
        list.hidden = true;
        input.focus();
      });
      input.addEventListener("blur", () => setTimeout(() => { list.hidden = true; }, 200));
    });
    document.querySelectorAll("form[data-confirm]").forEach((f) => f.addEventListener("submit", (e) => { if (!confirm(f.dataset.confirm)) e.preventDefault(); }));
  }

  document.addEventListener("DOMContentLoaded", () => { intelFeed(); notifications(); idAutocomplete(); });
})();
