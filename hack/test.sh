#!/usr/bin/env bash
# `make test`: every test of every module, on the real local node. Make has
# built bin/ (every binary the tests start) and bin/k8s (the control plane)
# before this runs; this script
#   1. brings the node up (or reuses it) and packs and loads Sortie's images,
#      so no test builds or installs anything inside its deadline;
#   2. runs the unit and integration packages under the race detector, and
#      the suites that mostly wait on Pods (test/e2e, test/chart) without it;
#   3. checks that the run left no namespace or volume behind on the node;
#   4. when it started the node, proves that down leaves nothing and that a
#      second up works.
#
# Settings: TEST_FLAGS (go test flags of both passes), SORTIE_TEST_SCALE (a
# factor of at least 1 on every wait in the tests, for a slow machine),
# SORTIE_TEST_PACKAGES (limit to these packages, as go test names them).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
kubectl="$root/bin/k8s/v1.37.2/kubectl"
TEST_FLAGS=${TEST_FLAGS:--count=1 -timeout=30m}
# Suites that drive whole platforms and Pods: the race detector finds
# nothing in their own code (the services they start are separate
# processes) and would only slow them down.
NODE_SUITES=(sortie.dev/test/e2e/... sortie.dev/test/chart/...)

log() { printf '[test %4ss] %s\n' "$SECONDS" "$*" >&2; }
export SORTIE_TEST_BIN_DIR="$root/bin"

was_up=no
hack/cluster.sh is-up >/dev/null 2>&1 && was_up=yes
log "the local node (already up: $was_up)"
hack/cluster.sh up
log "packing and loading Sortie's images"
hack/images.sh --prebuilt
kc() { "$kubectl" --kubeconfig "$(hack/cluster.sh kubeconfig)" "$@"; }

# What the node holds before the tests: anything more afterwards was left
# behind by a test.
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
kc get namespaces -o name | sort >"$before/namespaces"
kc get persistentvolumes -o name | sort >"$before/volumes"

if [ -n "${SORTIE_TEST_PACKAGES:-}" ]; then
  read -ra race_pkgs <<<"$SORTIE_TEST_PACKAGES"
  node_pkgs=()
else
  mapfile -t race_pkgs < <(go list sortie.dev/... | grep -v -e '^sortie.dev/test/e2e' -e '^sortie.dev/test/chart')
  node_pkgs=("${NODE_SUITES[@]}")
fi

failed=()
t0=$SECONDS
log "unit and integration packages, under the race detector (${#race_pkgs[@]} packages)"
# shellcheck disable=SC2086 # TEST_FLAGS is a list of flags
go test -race -p 3 $TEST_FLAGS "${race_pkgs[@]}" || failed+=("unit and integration packages")
log "unit and integration packages took $((SECONDS - t0))s"
if [ ${#node_pkgs[@]} -gt 0 ]; then
  t0=$SECONDS
  log "the platform suites on the node: ${node_pkgs[*]}"
  # shellcheck disable=SC2086
  go test -p 2 $TEST_FLAGS "${node_pkgs[@]}" || failed+=("platform suites")
  log "the platform suites took $((SECONDS - t0))s"
fi

# Namespaces are deleted when their test ends, but deleting one (its Pods'
# grace periods, its volumes) takes a while: give it time, then name
# whatever is still there, and remove it so the next run starts clean.
log "checking that the tests left nothing on the node"
leftovers() {
  comm -13 "$before/namespaces" <(kc get namespaces -o name | sort)
  comm -13 "$before/volumes" <(kc get persistentvolumes -o name | sort)
}
left=""
for _ in $(seq 180); do
  left=$(leftovers)
  [ -z "$left" ] && break
  sleep 1
done
if [ -n "$left" ]; then
  log "FAIL: the tests left these behind on the node (deleting them now):"
  printf '  %s\n' $left >&2
  for obj in $left; do kc delete "$obj" --wait=false >/dev/null 2>&1 || true; done
  failed+=("cleanup")
else
  log "nothing left behind"
fi

if [ $was_up = no ] && [ -z "${SORTIE_TEST_PACKAGES:-}" ]; then
  log "cluster lifecycle: down, nothing left, up again, down"
  { hack/cluster.sh down && hack/cluster.sh verify-down && hack/cluster.sh up &&
    hack/cluster.sh down && hack/cluster.sh verify-down; } || failed+=("cluster lifecycle")
fi

if [ ${#failed[@]} -gt 0 ]; then
  log "FAIL: $(IFS=,; echo "${failed[*]}")"
  exit 1
fi
log "PASS: every module"
