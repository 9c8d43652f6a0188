#!/usr/bin/env bash
# Checks for what Sortie's tests and `make run` need beyond Go, and installs
# it when this is Debian or Ubuntu and we are root. Elsewhere it says what to
# install and stops.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }

need_go() {
  command -v go >/dev/null || { log "Go is not installed: install Go 1.26 from your distribution or go.dev"; exit 1; }
  local v
  v=$(go env GOVERSION)
  case "$v" in
    go1.2[6-9]*|go1.[3-9]*) ;;
    *) log "Go $v is too old: Sortie needs Go 1.26"; exit 1 ;;
  esac
}

missing=()
need_go
command -v redis-server >/dev/null || missing+=(redis-server)
command -v git >/dev/null || missing+=(git)
command -v gcc >/dev/null || missing+=(gcc)   # the race detector needs cgo
# `hack/deps.sh unit` (make test-unit) needs no more than that.
if [ "${1:-}" != unit ]; then
  command -v ss >/dev/null || missing+=(iproute2)
  command -v jq >/dev/null || missing+=(jq)     # the README's curl walkthrough
  # The e2e tests also run every journey behind a real nginx.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system redis on 6379; Sortie runs its own, so stop that one.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  # Likewise nginx: the tests start their own.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
    pkill -x nginx 2>/dev/null || true
  fi
  exit 0
fi
log "missing: ${missing[*]}"
log "install them with your package manager (Debian/Ubuntu: sudo apt-get install ${missing[*]}), then run make again"
exit 1
