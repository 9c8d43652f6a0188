#!/usr/bin/env bash
# Runs CI as a fresh machine would: a fresh clone of this repository's HEAD
# with empty Go build and module caches, no bin/ and no .state/, then
# .ci/run in it (apt-get, the Kubernetes build, make lint, make test). What
# else a fresh machine lacks (the Debian packages) this machine keeps
# installed; .ci/run checks for them as it would there.
#
#   hack/fresh-ci.sh            one run; prints its wall time
#   hack/fresh-ci.sh -n 3       three runs in a row; stops at the first failure
#   hack/fresh-ci.sh -k         keep the clone and caches afterwards (default: removed)
#
# It needs root (the node) and the machine's own local cluster stopped:
# both clusters would use the same ports and bridge. Only committed work is
# tested: commit first. Logs: $SORTIE_FRESH_DIR (default /tmp/sortie-fresh-ci).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=1 keep=no
while getopts "n:k" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    k) keep=yes ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
log() { printf '[fresh-ci] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "needs root, as CI and the local node do"; exit 1; }
if pgrep -f 'kube-apiserver.*--etcd-servers' >/dev/null; then
  log "a Kubernetes control plane is running on this machine (probably this checkout's node):"
  log "stop it first with hack/cluster.sh down (in the checkout that started it); the fresh clone starts its own"
  exit 1
fi
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  log "note: uncommitted changes are not tested (the clone is of HEAD $(git -C "$root" rev-parse --short HEAD))"
fi

base=${SORTIE_FRESH_DIR:-/tmp/sortie-fresh-ci}
mkdir -p "$base"
results=()
for i in $(seq "$runs"); do
  work=$(mktemp -d "$base/run-XXXX")
  log "run $i of $runs in $work"
  git clone -q --no-hardlinks "$root" "$work/sortie"
  mkdir -p "$work"/{gocache,gomodcache,gopath}
  start=$SECONDS
  status=0
  # Empty caches and a clean environment: only what a CI machine has. TMPDIR
  # stays /tmp, as on CI: the e2e nginx's workers (user nobody) must reach
  # their temporary folders, which a folder under the 0700 run folder is not.
  env -i PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    HOME="$HOME" TERM=dumb LANG=C.UTF-8 \
    GOCACHE="$work/gocache" GOMODCACHE="$work/gomodcache" GOPATH="$work/gopath" \
    GOFLAGS=-buildvcs=false ${SORTIE_TEST_SCALE:+SORTIE_TEST_SCALE=$SORTIE_TEST_SCALE} \
    "$work/sortie/.ci/run" >"$work/ci.log" 2>&1 || status=$?
  took=$((SECONDS - start))
  # Whatever the run left, its node must not outlive it.
  (cd "$work/sortie" && hack/cluster.sh down >/dev/null 2>&1) || true
  results+=("run $i: $([ $status -eq 0 ] && echo PASS || echo "FAIL (exit $status)") in ${took}s ($((took / 60)) min), log $work/ci.log")
  log "${results[-1]}"
  grep -E '^\[test|make test took|^(ok|FAIL|---)' "$work/ci.log" | grep -v '^ok ' | tail -n 30 >&2 || true
  if [ "$keep" = no ]; then
    cp "$work/ci.log" "$base/ci-$(basename "$work").log"
    chmod -R u+w "$work" 2>/dev/null || true   # the module cache is read-only
    rm -rf "$work"
    results[-1]="${results[-1]/$work\/ci.log/$base/ci-$(basename "$work").log}"
  fi
  [ $status -eq 0 ] || break
done
printf '%s\n' "${results[@]}"
for r in "${results[@]}"; do [[ $r == *PASS* ]] || exit 1; done
