#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and `make run` need, from the Go
# module proxy, into bin/k8s/<version>/ (the folder envtest and hack/ read).
# Each binary is built once per version; a second run costs nothing.
#
#   hack/kube-binaries.sh                  # etcd kube-apiserver kube-controller-manager kube-scheduler
#   hack/kube-binaries.sh kubelet kubectl  # any cmd under k8s.io/kubernetes/cmd, etcd,
#                                          # or local-path-provisioner (the node's storage)
#
# Prints the binary folder on its last line of stdout; progress goes to stderr.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/bin/k8s/$KUBE_VERSION"
work="$root/bin/.build"
mkdir -p "$out" "$work"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler)

log() { printf '[kube-binaries] %s\n' "$*" >&2; }

# want NAME VERSION: true when bin/k8s/<v>/NAME is missing or from another version.
want() { [ ! -x "$out/$1" ] || [ "$(cat "$out/.$1.version" 2>/dev/null)" != "$2" ]; }

build_etcd() {
  want etcd "$ETCD_VERSION" || return 0
  local mod="$work/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    (cd "$mod" && GOWORK=off go mod init sortie.local/etcd-build >/dev/null 2>&1)
  fi
  log "building etcd $ETCD_VERSION (about a minute on 2 cores)"
  local t0=$SECONDS
  (cd "$mod" && export GOWORK=off GOFLAGS=-mod=mod &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 &&
    go build -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
  echo "$ETCD_VERSION" >"$out/.etcd.version"
  log "etcd built in $((SECONDS - t0))s"
}

# The kubernetes module replaces its staging modules with local paths, which a
# dependent module cannot follow: pin each one to the matching published version.
kube_module() {
  local mod="$work/kubernetes-$KUBE_VERSION"
  if [ -f "$mod/.ready" ]; then echo "$mod"; return; fi
  mkdir -p "$mod"
  log "preparing a build module for k8s.io/kubernetes $KUBE_VERSION"
  local kmod
  kmod=$(cd "$work" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$kmod" ] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION from the module proxy"; exit 1; }
  {
    echo "module sortie.local/kube-build"
    echo
    echo "go $(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    awk '/^replace \(/{inblock=1; next} inblock && /^\)/{inblock=0} inblock && $1 ~ /^k8s\.io\// {print $1}' "$kmod" |
      while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
    echo ")"
  } >"$mod/go.mod"
  if ! grep -q '=> k8s.io/' "$mod/go.mod"; then
    log "found no staging modules to pin in $kmod"; exit 1
  fi
  (cd "$mod" && printf 'package main\n' >doc.go && GOWORK=off GOFLAGS=-mod=mod go mod download >&2)
  touch "$mod/.ready"
  echo "$mod"
}

build_kube() {
  local name=$1
  want "$name" "$KUBE_VERSION" || return 0
  local mod
  mod=$(kube_module)
  log "building $name $KUBE_VERSION (the first Kubernetes binary takes about 5 minutes on 2 cores, later ones 1-2)"
  local t0=$SECONDS
  (cd "$mod" && export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 &&
    go get "k8s.io/kubernetes/cmd/$name@$KUBE_VERSION" >&2 &&
    go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=$(echo "$KUBE_VERSION" | sed 's/^v\([0-9]*\).*/\1/') \
      -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | sed 's/^v[0-9]*\.\([0-9]*\).*/\1/') \
      -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
      -o "$out/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$out/$name.tmp" "$out/$name"
  echo "$KUBE_VERSION" >"$out/.$name.version"
  log "$name built in $((SECONDS - t0))s"
}

build_local_path() {
  want local-path-provisioner "$LOCAL_PATH_VERSION" || return 0
  log "building local-path-provisioner $LOCAL_PATH_VERSION (about a minute)"
  local t0=$SECONDS gobin="$work/local-path-$LOCAL_PATH_VERSION"
  (export GOWORK=off CGO_ENABLED=0 GOBIN="$gobin" &&
    go install -trimpath -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" >&2)
  mv "$gobin/local-path-provisioner" "$out/local-path-provisioner"
  echo "$LOCAL_PATH_VERSION" >"$out/.local-path-provisioner.version"
  log "local-path-provisioner built in $((SECONDS - t0))s"
}

command -v go >/dev/null || { log "Go is not installed (need go1.26)"; exit 1; }
for c in "${components[@]}"; do
  case "$c" in
    etcd) build_etcd ;;
    local-path-provisioner) build_local_path ;;
    *) build_kube "$c" ;;
  esac
done
log "binaries ready in $out"
echo "$out"
