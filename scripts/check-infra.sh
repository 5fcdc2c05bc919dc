#!/usr/bin/env bash
# Validates the operator files without a cluster or a Docker engine:
#   * infra/k8s manifests against the Kubernetes OpenAPI schemas (kubernetes-validate, offline),
#   * the Compose file (structure, references, every service started, env names real),
#   * the env names of the k8s ConfigMap/Secret against `battlescope config`,
#   * Prometheus configs and rules (promtool),
#   * Grafana dashboards: valid JSON, and every battlescope_* metric in a PromQL query
#     (dashboards and rules) is exported by a live `battlescope demo` or declared in code,
#   * `make -n k8s-deploy` / `make -n k8s-init` print the documented steps,
#   * docs/ops/configuration.md is what `make docs` generates from `battlescope config`.
# Fails loudly on the first problem. Uses target/debug/battlescope (built by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BATTLESCOPE_BIN:-target/debug/battlescope}"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
fail() { echo "check-infra: FAIL: $*" >&2; exit 1; }
step() { echo "check-infra: $*" >&2; }
[ -x "$BIN" ] || fail "$BIN not built (run cargo build -p battlescope first)"

step "configuration reference"
"$BIN" config | python3 docs/ops/gen-configuration.py | diff -u docs/ops/configuration.md - >&2 \
  || fail "docs/ops/configuration.md is stale: run make docs"

step "kubernetes manifests"
if ! command -v kubernetes-validate >/dev/null; then
  python3 -m pip install -q kubernetes-validate >&2 || fail "cannot install kubernetes-validate"
fi
# --strict rejects unknown fields; schemas ship inside the package (no network).
kubernetes-validate --strict --quiet -k "$K8S_VERSION" infra/k8s/*.yaml || fail "k8s manifests do not validate"

step "promtool"
command -v promtool >/dev/null || fail "promtool not installed (apt-get install prometheus)"
for f in infra/prometheus/prometheus.*.yml; do
  promtool check config "$f" >/dev/null || fail "promtool check config $f"
done
promtool check rules infra/prometheus/rules.yml >/dev/null || fail "promtool check rules"

step "scraping a live battlescope demo"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BATTLESCOPE_DATA_DIR="$WORK/data" BATTLESCOPE_LISTEN="127.0.0.1:$PORT" "$BIN" demo >"$WORK/demo.log" 2>&1 &
DEMO_PID=$!
cleanup() { kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
up=""
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$DEMO_PID" 2>/dev/null || break
  sleep 0.2
done
[ -n "$up" ] || { tail -20 "$WORK/demo.log" >&2; fail "battlescope demo did not come up"; }
# Let the bundled import flow through the pipeline so its counters exist.
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt"
  grep -q '^battlescope_battle_killmails_total' "$WORK/metrics.txt" && break
  sleep 0.5
done
"$BIN" config >"$WORK/config.toml"

step "compose, env names, dashboards, rules"
python3 - "$WORK/metrics.txt" "$WORK/config.toml" <<'PY' || fail "see above"
import glob, json, re, sys, pathlib
import yaml

metrics_file, config_file = sys.argv[1], sys.argv[2]
errors = []
def err(msg): errors.append(msg); print("  ERROR:", msg, file=sys.stderr)

# --- names the config really knows: fixed [BATTLESCOPE_X] names and SECTION__KEY paths
cfg = pathlib.Path(config_file).read_text()
fixed = set(re.findall(r"\[(BATTLESCOPE_[A-Z0-9_]+)\]", cfg))
keys, section = set(), ""
for line in cfg.splitlines():
    m = re.match(r"^\[([a-z_]+)\]\s*$", line)
    if m: section = m.group(1); continue
    m = re.match(r"^([a-z_]+)\s*=", line)
    if m: keys.add(f"{section}__{m.group(1)}".upper() if section else m.group(1).upper())
def env_ok(name):
    return name in fixed or name.removeprefix("BATTLESCOPE_") in keys
def check_env(where, names):
    for n in names:
        if n.startswith("BATTLESCOPE_") and not env_ok(n):
            err(f"{where}: {n} is not a BattleScope setting (see `battlescope config`)")

SERVICES = {"ingestion", "enrichment", "battle", "search", "notification", "authentication", "web"}

# --- compose
c = yaml.safe_load(open("infra/docker-compose.yaml"))
svcs = c.get("services") or err("compose: no services") or {}
for need in ["postgres", "redis", "redpanda", "typesense", "prometheus", "grafana", "loki", "promtail", "migrate"]:
    if need not in svcs: err(f"compose: service {need} missing")
served = set()
for name, s in svcs.items():
    if not isinstance(s, dict): err(f"compose: {name} is not a mapping"); continue
    if "image" not in s and "build" not in s: err(f"compose: {name} has neither image nor build")
    cmd = s.get("command") or []
    if isinstance(cmd, list) and cmd[:1] == ["serve"]: served.update(cmd[1:])
    deps = s.get("depends_on") or {}
    for d in (deps if isinstance(deps, (list, dict)) else []):
        if d not in svcs: err(f"compose: {name} depends on unknown {d}")
    for v in s.get("volumes") or []:
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith("./"):
            if not pathlib.Path("infra", src).exists(): err(f"compose: {name} mounts missing {src}")
        elif src and not src.startswith("/") and src not in (c.get("volumes") or {}):
            err(f"compose: {name} uses undeclared volume {src}")
    env = s.get("environment") or {}
    check_env(f"compose {name}", env.keys() if isinstance(env, dict) else [e.split("=")[0] for e in env])
if served != SERVICES: err(f"compose: serve commands cover {sorted(served)}, want {sorted(SERVICES)}")

# --- k8s: env names and every service deployed with migrate init containers
served = set()
for f in sorted(glob.glob("infra/k8s/*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if not d: continue
        if d["kind"] in ("ConfigMap", "Secret") and d["metadata"]["name"].startswith("battlescope"):
            check_env(f"{f} {d['metadata']['name']}", (d.get("data") or d.get("stringData") or {}).keys())
        if d["kind"] == "Deployment" and d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "battlescope":
            spec = d["spec"]["template"]["spec"]
            args = spec["containers"][0]["args"]
            served.update(args[1:])
            for p in ("livenessProbe", "readinessProbe"):
                if p not in spec["containers"][0]: err(f"{f}: {d['metadata']['name']} lacks {p}")
            if "resources" not in spec["containers"][0]: err(f"{f}: {d['metadata']['name']} lacks resources")
if served != SERVICES: err(f"k8s: deployments serve {sorted(served)}, want {sorted(SERVICES)}")

# --- metric names: live scrape, plus names declared in code (counters that only exist
# once their event happened, e.g. ESI or webhook failures, are absent from a demo)
live = set()
for line in open(metrics_file):
    m = re.match(r"^(battlescope_[a-z0-9_]+)", line)
    if m: live.add(re.sub(r"_(bucket|sum|count)$", "", m.group(1)))
if "battlescope_http_requests_total" not in live: err("live scrape has no battlescope_http_requests_total")
declared = set()
for src in glob.glob("crates/*/src/**/*.rs", recursive=True) + glob.glob("services/*/src/**/*.rs", recursive=True):
    declared.update(re.findall(r'"(battlescope_[a-z0-9_]+)"', open(src).read()))
def check_names(where, expr):
    for n in set(re.findall(r"\bbattlescope_[a-z0-9_]+", expr)):
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if base in live: continue
        if base in declared: print(f"  note: {where}: {base} declared in code, absent from the demo scrape", file=sys.stderr); continue
        err(f"{where}: {n} is neither exported by a running instance nor declared in code")

dashboards = glob.glob("infra/grafana/dashboards/*.json")
if not dashboards: err("no dashboards")
for f in dashboards:
    try: d = json.load(open(f))
    except json.JSONDecodeError as e: err(f"{f}: invalid JSON: {e}"); continue
    for k in ("uid", "title", "panels", "schemaVersion"):
        if k not in d: err(f"{f}: missing {k}")
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)): err(f"{f}: duplicate panel ids")
    nexpr = 0
    for p in d.get("panels", []):
        for t in p.get("targets", []):
            ds = (t.get("datasource") or p.get("datasource") or {}).get("type")
            if ds == "prometheus":
                nexpr += 1; check_names(f"{f} panel '{p.get('title')}'", t.get("expr", ""))
    if nexpr == 0: err(f"{f}: no Prometheus queries")
rules = yaml.safe_load(open("infra/prometheus/rules.yml"))
for g in rules["groups"]:
    for r in g["rules"]: check_names(f"rules.yml {r.get('alert')}", r["expr"])
for f in glob.glob("infra/grafana/provisioning/**/*.yaml", recursive=True) + glob.glob("infra/loki/*.yaml"):
    yaml.safe_load(open(f))
print(f"  {len(live)} metric names live, {len(declared)} declared in code", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

step "make -n"
out="$(make -n k8s-deploy)" || fail "make -n k8s-deploy"
for want in "apply -f infra/k8s/40-services.yaml" "create configmap prometheus-config" "rollout status"; do
  grep -qF -- "$want" <<<"$out" || fail "make -n k8s-deploy lacks: $want"
done
out="$(make -n k8s-init)" || fail "make -n k8s-init"
grep -qF "30-create-databases-job.yaml" <<<"$out" || fail "make -n k8s-init lacks the create-databases Job"
make -n build test lint run compose-up compose-down docs >/dev/null || fail "make -n of the other targets"
step "OK"
