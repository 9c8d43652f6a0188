#!/usr/bin/env bash
# Installs scripted stand-ins for the agent CLIs (claude, codex, opencode,
# amp) into the default host workspace of a running `make run`, so a mission
# can be tried on a machine with no model API key and no internet. They are
# the tests' fake agent (services/mission-control/cmd/fake-agent): each
# speaks its CLI's real JSON stream, runs a real `ls` as its tool call and
# answers with a canned text. Real CLIs go in the same place through a
# workspace init script (e.g. `npm install -g @anthropic-ai/claude-code`).
#
#   hack/demo-agents.sh            uses http://localhost:8080 and .state/
#   SORTIE_URL=... SORTIE_PASSWORD=... hack/demo-agents.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
url=${SORTIE_URL:-http://localhost:${SORTIE_PORT:-8080}}
password=${SORTIE_PASSWORD:-$(cat "${SORTIE_STATE_DIR:-$root/.state}/auth/admin-password")}
ws=00000000-0000-0000-0000-000000000000
dir=/usr/local/bin
log() { printf '[demo-agents] %s\n' "$*" >&2; }

token=$(curl -fsS -X POST "$url/api/auth/login" -H 'Content-Type: application/json' \
  -d "{\"password\": \"$password\"}" | sed 's/.*"token":"\([^"]*\)".*/\1/')
[ -n "$token" ] || { log "could not log in at $url"; exit 1; }

# exec COMMAND [STDIN-FILE]: run in the default workspace, fail on non-zero.
exec_ws() {
  local body
  if [ -n "${2:-}" ]; then
    body=$(printf '{"command": "%s", "stdin": "%s"}' "$1" "$(cat "$2")")
  else
    body=$(printf '{"command": "%s"}' "$1")
  fi
  local out
  out=$(curl -fsS -X POST "$url/api/workspaces/$ws/exec" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary @- <<<"$body")
  case "$out" in
    *'"exit_code":0,'*) ;;
    *) log "exec failed: $out"; exit 1 ;;
  esac
}

log "building the stand-in agent"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root/services/mission-control" && CGO_ENABLED=0 go build -trimpath -o "$tmp/fake-agent" ./cmd/fake-agent)
base64 -w0 "$tmp/fake-agent" | split -b 700000 - "$tmp/part."

log "waiting for the default workspace to be ready"
for _ in $(seq 120); do
  curl -fsS "$url/api/workspaces/$ws" -H "Authorization: Bearer $token" | grep -q '"status":"ready"' && break
  sleep 1
done

log "installing claude, codex, opencode and amp into $dir of the default workspace"
exec_ws "rm -f $dir/sortie-demo-agent"
for part in "$tmp"/part.*; do
  exec_ws "base64 -d >> $dir/sortie-demo-agent" "$part"
done
exec_ws "chmod 755 $dir/sortie-demo-agent && for c in claude codex opencode amp; do ln -sf sortie-demo-agent $dir/\$c; done"

# The stand-ins, like the real CLIs, refuse to run without a credential.
for p in anthropic openai amp; do
  curl -fsS -X POST "$url/api/providers/$p/auth" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"api_key": "demo-key-not-a-real-one"}' >/dev/null
done
log "done: missions in the default workspace now run the stand-ins"
