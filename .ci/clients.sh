#!/usr/bin/env bash
# Real-client checks, run from the repository root: the Claude Desktop bundle (validated, packed, size-checked
# and launched the way the host launches it), the MCP Inspector CLI over stdio and Streamable HTTP (with and
# without a bearer token), and the official conformance runner. The npm packages are pinned and installed by
# npx at run time; every mismatch fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

MCPB=@anthropic-ai/mcpb@2.1.2
MCP_REMOTE=mcp-remote@0.15.1 # Claude Desktop's bridge to an HTTP server with a bearer token
INSPECTOR=@modelcontextprotocol/inspector@2.12.0
CONFORMANCE=@modelcontextprotocol/conformance@0.1.16
NODE=node@22.23.3 # the Inspector needs Node >= 22.19 and the conformance runner Node 22's fs.globSync
BUNDLE_LIMIT=$((1024 * 1024))
TOOLS=20
READ_TOOLS=13

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
npx() { command npx --yes --loglevel=error "$@"; }
command -v jq >/dev/null || fail "jq is needed to read the clients' JSON output (apt-get install jq)"

export PURGEWARDEN_AUDIT_LOG="$work/audit.jsonl"
export PURGEWARDEN_STATE_DIR="$work"
export MCP_CATALOG_PATH="$work/inspector-catalog.json" MCP_CLIENT_CONFIG_PATH="$work/inspector-client.json"
export MCP_REMOTE_CONFIG_DIR="$work/mcp-remote"

# The stdio server's environment: the Inspector passes only a minimal one, so what uv needs goes along.
server_env=(-e "PURGEWARDEN_AUDIT_LOG=$PURGEWARDEN_AUDIT_LOG" -e "PURGEWARDEN_STATE_DIR=$PURGEWARDEN_STATE_DIR")
for name in SSL_CERT_FILE SSL_CERT_DIR NODE_EXTRA_CA_CERTS $(compgen -e | grep '^UV_' || true); do
  [ -n "${!name:-}" ] && server_env+=(-e "$name=${!name}")
done

inspect() { npx "$INSPECTOR" --cli "$@"; }

# Background servers run as the environment's own Python (not under `uv run`, which may be a shim), so the
# PID the trap kills is the server's.
python=$(uv run --quiet python -c 'import sys; print(sys.executable)')

# A free port below the kernel's ephemeral range: `serve --sandbox` binds its emulators to ephemeral ports
# before the server binds its own, so a port the kernel handed out here could be handed to an emulator next.
free_port() {
  "$python" - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(20000, min(low, 32768)), 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
PY
}

# wait_http URL PID LOG: until URL answers at all (any status), or fail with the server's log.
wait_http() {
  for _ in $(seq 150); do
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "server for $1 exited early"; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" != 000 ] && return 0
    sleep 0.2
  done
  cat "$3" >&2
  fail "no answer from $1 within 30 s"
}

# check_session LABEL INSPECTOR-TARGET...: list the tools, call one read and one preview tool, assert on all.
check_session() {
  local label=$1
  shift
  call() { # call NAME INSPECTOR-ARGS...: one Inspector run, its stderr kept for when it fails
    inspect "${@:2}" >"$work/$1.json" 2>"$work/$1.err" || {
      local status=$?
      cat "$work/$1.err" "$work/$1.json" >&2
      fail "$label: $1 failed (Inspector exit status $status)"
    }
  }
  call list --method tools/list --strict "$@" # --strict: exit 6 on an error-severity schema problem
  count=$(jq '.tools | length' "$work/list.json")
  [ "$count" -eq "$TOOLS" ] || fail "$label: $count tools listed, expected $TOOLS"
  call read --method tools/call --tool-name cocoon_list_recycle_bin "$@"
  jq -e '(.isError | not) and (.structuredContent.items | length > 0)' "$work/read.json" >/dev/null ||
    { cat "$work/read.json" >&2; fail "$label: cocoon_list_recycle_bin returned no items"; }
  call preview --method tools/call --tool-name cocoon_preview_empty_recycle_bin "$@"
  jq -e '(.isError | not) and (.structuredContent.confirmation_token | type == "string" and length > 20)' \
    "$work/preview.json" >/dev/null || { cat "$work/preview.json" >&2; fail "$label: the preview gave no confirmation_token"; }
  echo "$label: $count tools; cocoon_list_recycle_bin read $(jq '.structuredContent.items | length' "$work/read.json") items;" \
    "the preview returned a confirmation_token"
}

echo "== [${SECONDS}s] Node for the Inspector and the conformance runner ($NODE)"
node22=$(npx "$NODE" -p 'process.execPath')
export PATH="$(dirname "$node22"):$PATH"
node --version

echo "== [${SECONDS}s] bundle: validate, pack, size and contents"
npx "$MCPB" validate manifest.json
npx "$MCPB" pack . "$work/purgewarden.mcpb" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "mcpb pack failed"; }
size=$(wc -c <"$work/purgewarden.mcpb")
echo "bundle: $size bytes packed (limit $BUNDLE_LIMIT); $(grep -E 'unpacked size|total files' "$work/pack.log" | tr '\n' ' ')"
[ "$size" -lt "$BUNDLE_LIMIT" ] || fail "the bundle is $size bytes, over $BUNDLE_LIMIT: check .mcpbignore"
"$python" - "$work/purgewarden.mcpb" <<'EOF' || fail "unexpected files in the bundle: check .mcpbignore"
import sys, zipfile
tops = {name.split("/")[0] for name in zipfile.ZipFile(sys.argv[1]).namelist()}
expected = {"manifest.json", "pyproject.toml", "uv.lock", "README.md", "purgewarden"}
print("bundle holds:", ", ".join(sorted(tops)))
sys.exit(tops != expected)
EOF

echo "== [${SECONDS}s] bundle: launched as the Claude Desktop host does (mcp_config with user_config filled in)"
npx "$MCPB" unpack "$work/purgewarden.mcpb" "$work/bundle" >/dev/null
"$python" -m purgewarden sandbox --katapult-port 0 --vault-port 0 --cocoon-port 0 >"$work/sandbox.out" 2>&1 &
pids+=($!)
for _ in $(seq 150); do grep -qs '^export COCOON_ORGANISATION_ID=' "$work/sandbox.out" && break; sleep 0.2; done
grep -q '^export COCOON_ORGANISATION_ID=' "$work/sandbox.out" || { cat "$work/sandbox.out" >&2; fail "the sandbox did not start"; }
# The user's answers in the host's form: user_config keys are the variables' names in lower case.
values=$(grep '^export ' "$work/sandbox.out" | sed 's/^export //' |
  jq -R 'split("=") | {key: (.[0] | ascii_downcase), value: (.[1:] | join("="))}' | jq -s from_entries)
bundle_session() { # bundle_session READ_ONLY: the host's substitution (mcpb's getMcpConfigForManifest), then run
  local manifest="$work/bundle/manifest.json"
  mapfile -t command < <(jq -r --arg dir "$work/bundle" \
    '.server.mcp_config | .command, (.args[] | gsub("\\$\\{__dirname\\}"; $dir))' "$manifest")
  mapfile -t env < <(jq -r --argjson v "$values" --argjson ro "$1" '
    ((.user_config | map_values(.default)) + $v + {read_only: $ro}) as $all
    | .server.mcp_config.env | to_entries[]
    | "-e", "\(.key)=\(.value | gsub("\\$\\{user_config\\.(?<k>[^}]+)\\}"; $all[.k] | tostring))"' "$manifest")
  grep -q '\${' <<<"${env[*]}" && fail "a placeholder survived the substitution: ${env[*]}"
  inspect --method tools/list --connect-timeout 120000 "${env[@]}" "${server_env[@]}" -- "${command[@]}"
}
bundle_session false >"$work/bundle-list.json" || fail "the bundle's server did not start"
count=$(jq '.tools | length' "$work/bundle-list.json")
[ "$count" -eq "$TOOLS" ] || fail "the bundle served $count tools, expected $TOOLS"
bundle_session true >"$work/bundle-list.json" || fail "the bundle's server did not start in read-only mode"
count=$(jq '[.tools[] | select(.annotations.readOnlyHint)] | length' "$work/bundle-list.json")
[ "$(jq '.tools | length' "$work/bundle-list.json")" -eq "$READ_TOOLS" ] && [ "$count" -eq "$READ_TOOLS" ] ||
  fail "read-only bundle: expected $READ_TOOLS read-only tools and nothing else"
echo "bundle: $TOOLS tools; with read_only on, $READ_TOOLS (no destructive tool)"

echo "== [${SECONDS}s] Inspector over stdio: uv run purgewarden serve --sandbox"
check_session stdio --connect-timeout 60000 "${server_env[@]}" -- uv run --quiet purgewarden serve --sandbox

echo "== [${SECONDS}s] Inspector over Streamable HTTP: purgewarden serve --transport streamable-http --sandbox"
port=$(free_port)
"$python" -m purgewarden serve --transport streamable-http --sandbox --port "$port" >"$work/http.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port/mcp"
wait_http "$url" "${pids[-1]}" "$work/http.log"
check_session "streamable-http" --transport http --server-url "$url"

echo "== [${SECONDS}s] conformance runner against $url (expected failures: .ci/conformance-baseline.yml)"
npx "$CONFORMANCE" server --url "$url" --expected-failures .ci/conformance-baseline.yml \
  -o "$work/conformance" >"$work/conformance.log" 2>&1 || {
  cat "$work/conformance.log" >&2
  fail "conformance: a scenario failed that the baseline does not expect, or a listed one now passes"
}
sed -n '/=== SUMMARY ===/,$p' "$work/conformance.log"

echo "== [${SECONDS}s] shared deployment: --host 0.0.0.0 with PURGEWARDEN_HTTP_TOKEN, clients sending a bearer token"
port=$(free_port)
token=$("$python" -c 'import secrets; print(secrets.token_urlsafe(32))')
PURGEWARDEN_HTTP_TOKEN="$token" PURGEWARDEN_ALLOWED_HOSTS="127.0.0.1:$port" \
  "$python" -m purgewarden serve --transport streamable-http --host 0.0.0.0 --port "$port" --sandbox \
  >"$work/shared.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port/mcp"
wait_http "$url" "${pids[-1]}" "$work/shared.log"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url" -H 'content-type: application/json' -d '{}')
[ "$status" = 401 ] || fail "without a bearer token the MCP endpoint answered $status, expected 401"
check_session "streamable-http with bearer token" --transport http --server-url "$url" --header "Authorization: Bearer $token"
# Claude Desktop's JSON config reaches it through mcp-remote (docs/clients.md), the header from the env.
check_session "stdio through mcp-remote with bearer token" --connect-timeout 60000 "${server_env[@]}" \
  -e "AUTH_HEADER=Bearer $token" -e "MCP_REMOTE_CONFIG_DIR=$MCP_REMOTE_CONFIG_DIR" \
  -- npx -y --loglevel=error "$MCP_REMOTE" "$url" --header 'Authorization:${AUTH_HEADER}'

echo "clients.sh: all real-client checks passed in ${SECONDS}s"
