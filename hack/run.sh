#!/usr/bin/env bash
# `make run`: Sortie on this machine. Today that is a Redis server and the
# auth service on :8080; each service joins here as it lands (see README).
# State lives in .state/ and survives restarts; Ctrl-C stops everything.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="${SORTIE_STATE_DIR:-$root/.state}"
port="${SORTIE_PORT:-8080}"
redis_port="${SORTIE_REDIS_PORT:-6390}"
mkdir -p "$state"/{redis,auth/keys,logs}
chmod 700 "$state"

log() { printf '[run] %s\n' "$*" >&2; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  log "stopped; state kept in $state"
}
trap cleanup INT TERM EXIT

log "building the services"
make -s -C "$root" build

if [ ! -s "$state/auth/admin-password" ]; then
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$state/auth/admin-password"
  chmod 600 "$state/auth/admin-password"
fi

log "starting redis on 127.0.0.1:$redis_port (data in $state/redis)"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state/redis" \
  --appendonly yes --save "" --daemonize no --logfile "$state/logs/redis.log" &
pids+=($!)
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

log "starting auth on :$port (log in $state/logs/auth.log)"
SORTIE_LISTEN_ADDR=":$port" \
SORTIE_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
SORTIE_AUTH_PASSWORD_FILE="$state/auth/admin-password" \
SORTIE_AUTH_KEYS_DIR="$state/auth/keys" \
SORTIE_AUTH_GENERATE_KEY=true \
  "$root/bin/auth" >>"$state/logs/auth.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    log "auth exited; the end of its log:"; tail -n 20 "$state/logs/auth.log" >&2; exit 1
  fi
  sleep 0.1
done

cat <<MSG

  Sortie is running at http://localhost:$port

  Log in:
    curl -s -X POST http://localhost:$port/api/auth/login \\
      -H 'Content-Type: application/json' \\
      -d "{\"password\": \"\$(cat $state/auth/admin-password)\"}"

  The admin password is in $state/auth/admin-password.
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
