#!/usr/bin/env bash
# Three purgewarden replicas, one Redis and nginx on one host, in the foreground. Ctrl-C, SIGTERM or SIGHUP
# stops them all (nginx first, then the replicas, Redis last). If one of them exits on its own, the others are
# stopped too and the script exits with 1, so a supervisor (systemd, a container runtime) can restart it.
#
# Required environment:
#   PURGEWARDEN_SECRET        the same key on every replica (seals a question's state between rounds)
#   PURGEWARDEN_HTTP_TOKEN    the bearer token clients send (or PURGEWARDEN_OAUTH_ISSUER for OAuth)
#   the services' credentials (KATAPULT_API_TOKEN, PVAULT_API_KEY, COCOON_ACCESS_TOKEN, ... as in the
#   README's table): passed on to the replicas as they are.
# Optional:
#   DEPLOY_LISTEN             where nginx listens (default 127.0.0.1:8080)
#   PURGEWARDEN_ALLOWED_HOSTS the Host header(s) clients send to nginx, comma-separated (default
#                             DEPLOY_LISTEN; required when nginx listens on every interface)
#   DEPLOY_REPLICA_PORTS      the replicas' loopback ports, one replica per port (default "8001 8002 8003")
#   DEPLOY_BALANCE            client (default: each client address sticks to one replica; 2025-11-25
#                             clients need it) or round-robin (enough when every client is on 2026-07-28)
#   PURGEWARDEN_STORE_URL     an existing Redis/Valkey; default: a Redis started here on a Unix socket in
#                             the state directory, readable by this user only, persisted (append-only file)
#   DEPLOY_STATE_DIR          the replicas' state (audit logs) and Redis's data (default
#                             ${XDG_STATE_HOME:-~/.local/state}/purgewarden-deploy)
#   DEPLOY_DIR                generated nginx configuration, pid file, scratch (default DEPLOY_STATE_DIR/run)
#   PURGEWARDEN_PYTHON        a Python with purgewarden[redis] installed; default: this checkout's
#                             environment, through `uv run`
#   DEPLOY_NGINX, DEPLOY_REDIS_SERVER   the binaries (default: found on PATH, or in /usr/sbin)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

say() { printf 'purgewarden deploy: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 2
}

# --- configuration --------------------------------------------------------------------------------

[ -n "${PURGEWARDEN_SECRET:-}" ] ||
  die "set PURGEWARDEN_SECRET (the same random key for every replica), e.g. \$(openssl rand -hex 32)"
[ -n "${PURGEWARDEN_HTTP_TOKEN:-}" ] || [ -n "${PURGEWARDEN_OAUTH_ISSUER:-}" ] ||
  die "set PURGEWARDEN_HTTP_TOKEN (the bearer token clients send) or PURGEWARDEN_OAUTH_ISSUER"

LISTEN="${DEPLOY_LISTEN:-127.0.0.1:8080}"
case "$LISTEN" in
*:*) LISTEN_HOST="${LISTEN%:*}" LISTEN_PORT="${LISTEN##*:}" ;;
*) LISTEN_HOST="0.0.0.0" LISTEN_PORT="$LISTEN" ;;
esac
case "$LISTEN_HOST" in
0.0.0.0 | "[::]" | "*")
  [ -n "${PURGEWARDEN_ALLOWED_HOSTS:-}" ] ||
    die "nginx listens on every interface ($LISTEN): set PURGEWARDEN_ALLOWED_HOSTS to the host[:port] clients use"
  PROBE_HOST=127.0.0.1
  ;;
*) PROBE_HOST="${LISTEN_HOST#[}" PROBE_HOST="${PROBE_HOST%]}" ;;
esac
export PURGEWARDEN_ALLOWED_HOSTS="${PURGEWARDEN_ALLOWED_HOSTS:-$LISTEN}"

read -r -a REPLICA_PORTS <<<"${DEPLOY_REPLICA_PORTS:-8001 8002 8003}"
[ "${#REPLICA_PORTS[@]}" -ge 1 ] || die "DEPLOY_REPLICA_PORTS names no port"

case "${DEPLOY_BALANCE:-client}" in
client) BALANCE="hash \$remote_addr consistent;" ;;
round-robin) BALANCE="# round robin (nginx's default)" ;;
*) die "DEPLOY_BALANCE must be client or round-robin (got ${DEPLOY_BALANCE})" ;;
esac

STATE_DIR="${DEPLOY_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/purgewarden-deploy}"
RUN_DIR="${DEPLOY_DIR:-$STATE_DIR/run}"
mkdir -p "$STATE_DIR" "$RUN_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
# nginx's workers drop to an unprivileged user when started as root: let them reach their scratch space.
chmod 755 "$RUN_DIR"

find_binary() { # name...: the first found on PATH or in /usr/sbin
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    elif [ -x "/usr/sbin/$name" ]; then
      echo "/usr/sbin/$name"
      return 0
    fi
  done
  return 1
}
NGINX="${DEPLOY_NGINX:-$(find_binary nginx || true)}"
[ -n "$NGINX" ] || die "nginx not found (apt-get install nginx-light, or set DEPLOY_NGINX)"

if [ -n "${PURGEWARDEN_PYTHON:-}" ]; then
  PYTHON="$PURGEWARDEN_PYTHON"
else
  command -v uv >/dev/null 2>&1 || die "uv not found: install uv, or set PURGEWARDEN_PYTHON"
  # One `uv run` resolves (and if needed syncs) the checkout's environment; the replicas then start
  # from its Python directly, so signals reach them without a wrapper in between.
  PYTHON="$(uv run --quiet --project "$ROOT" --no-dev --extra redis python -c 'import sys; print(sys.executable)')"
fi
"$PYTHON" -c 'import purgewarden, redis' 2>/dev/null ||
  die "$PYTHON cannot import purgewarden and redis (install 'purgewarden[redis]')"

# --- processes ------------------------------------------------------------------------------------

REDIS_PIDS=() REPLICA_PIDS=() NGINX_PIDS=()

stop_all() { # pid...: SIGTERM, then wait up to 20 s each, then SIGKILL
  local pid deadline
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "process $pid did not stop within 20 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  trap - INT TERM HUP
  set +m # no job notices ("Terminated") for the processes stopped on purpose
  # nginx first (no new requests), then the replicas (they record their runs in the store), Redis last.
  [ "${#NGINX_PIDS[@]}" -eq 0 ] || stop_all "${NGINX_PIDS[@]}"
  [ "${#REPLICA_PIDS[@]}" -eq 0 ] || stop_all "${REPLICA_PIDS[@]}"
  [ "${#REDIS_PIDS[@]}" -eq 0 ] || stop_all "${REDIS_PIDS[@]}"
}
trap cleanup EXIT
trap 'say "stopping"; exit 0' INT TERM HUP
# Each process in its own process group: a Ctrl-C in the terminal reaches this script only, which then
# stops them in order (otherwise Redis could stop before the replicas have recorded their runs in it).
set -m

alive() { # pid: still running
  kill -0 "$1" 2>/dev/null
}

accepts() { # host port: a TCP connection succeeds
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # what pid command...: until the command succeeds, the process exits, or 60 s pass
  local what="$1" pid="$2" deadline=$((SECONDS + 60))
  shift 2
  until "$@"; do
    alive "$pid" || die "$what exited at start-up (its output is above)"
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not start within 60 s"
    sleep 0.1
  done
}

if [ -n "${PURGEWARDEN_STORE_URL:-}" ]; then
  say "store: $PURGEWARDEN_STORE_URL (not started here)"
else
  REDIS="${DEPLOY_REDIS_SERVER:-$(find_binary redis-server valkey-server || true)}"
  [ -n "$REDIS" ] || die "redis-server not found (apt-get install redis-server, or set PURGEWARDEN_STORE_URL)"
  mkdir -p "$STATE_DIR/redis"
  chmod 700 "$STATE_DIR/redis"
  SOCKET="$STATE_DIR/redis/redis.sock"
  # No TCP port: a Unix socket only this user may open (anyone who can write to the store can forge plans).
  "$REDIS" --port 0 --unixsocket "$SOCKET" --unixsocketperm 700 --dir "$STATE_DIR/redis" \
    --appendonly yes --save "" --logfile "" --daemonize no </dev/null &
  REDIS_PIDS+=("$!")
  redis_answers() {
    "$PYTHON" -c 'import sys, redis; redis.Redis(unix_socket_path=sys.argv[1]).ping()' "$SOCKET" 2>/dev/null
  }
  wait_for "redis-server" "${REDIS_PIDS[0]}" redis_answers
  export PURGEWARDEN_STORE_URL="unix://$SOCKET?db=0"
  say "store: Redis on $SOCKET (pid ${REDIS_PIDS[0]})"
fi

for i in "${!REPLICA_PORTS[@]}"; do
  port="${REPLICA_PORTS[$i]}"
  state="$STATE_DIR/replica-$((i + 1))"
  mkdir -p "$state"
  (
    export PURGEWARDEN_STATE_DIR="$state"
    exec "$PYTHON" -m purgewarden serve --transport streamable-http --host 127.0.0.1 --port "$port"
  ) </dev/null &
  REPLICA_PIDS+=("$!")
done
for i in "${!REPLICA_PORTS[@]}"; do
  wait_for "replica $((i + 1)) (port ${REPLICA_PORTS[$i]})" "${REPLICA_PIDS[$i]}" accepts 127.0.0.1 "${REPLICA_PORTS[$i]}"
done
say "replicas: ${REPLICA_PORTS[*]} on 127.0.0.1 (pids ${REPLICA_PIDS[*]})"

SERVERS=""
for port in "${REPLICA_PORTS[@]}"; do
  SERVERS+="        server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"$'\n'
done
CONFIG="$(<"$HERE/nginx.conf")"
CONFIG="${CONFIG//'${DEPLOY_DIR}'/$RUN_DIR}"
CONFIG="${CONFIG//'${DEPLOY_LISTEN}'/$LISTEN}"
CONFIG="${CONFIG//'${DEPLOY_BALANCE_DIRECTIVE}'/$BALANCE}"
CONFIG="${CONFIG//'${DEPLOY_UPSTREAM_SERVERS}'/${SERVERS%$'\n'}}"
case "$CONFIG" in *'${DEPLOY_'*) die "$HERE/nginx.conf has a placeholder this script does not fill in" ;; esac
printf '%s\n' "$CONFIG" >"$RUN_DIR/nginx.conf"
"$NGINX" -t -q -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -e stderr ||
  die "nginx refused the generated configuration $RUN_DIR/nginx.conf"
"$NGINX" -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -e stderr -g 'daemon off;' </dev/null &
NGINX_PIDS+=("$!")
wait_for "nginx" "${NGINX_PIDS[0]}" accepts "$PROBE_HOST" "$LISTEN_PORT"

say "serving http://$LISTEN/mcp for Host ${PURGEWARDEN_ALLOWED_HOSTS} (nginx pid ${NGINX_PIDS[0]}); Ctrl-C stops"

# Until a signal (the trap exits 0) or one of the processes exits on its own (exit 1).
set +e
wait -n
set -e
say "a process exited on its own: stopping the others"
exit 1
