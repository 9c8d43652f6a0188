#!/usr/bin/env bash
# Builds Sortie's own images from our binaries, without Docker, into
# bin/images/*.oci.tar (hack/tools/cmd/ocipack), and loads them into the local
# node when it is up (hack/cluster.sh imports bin/images/ at every start too).
#
# Every image is one static binary from bin/ (`make build`: CGO off,
# -trimpath, version stamped, built from the working tree as the tests run
# it), the CA certificates, and user 65532:65532: the same thing the
# Dockerfiles in services/*/Dockerfile build with Docker (they build each
# module on its own, GOWORK=off, as a release does).
#
#   hack/images.sh                 make build, then pack every image (and load, if the cluster is up)
#   hack/images.sh --prebuilt      pack what bin/ holds already (make test builds first)
#   hack/images.sh --no-load       pack only
#   hack/images.sh auth library    pack (and load) only these
#
# SORTIE_IMAGE_TAG (default dev) tags the images.
#
# sortie-redis is for the local node only: it has no registry to pull
# docker.io/library/redis from, so this packs the host's redis-server and
# the shared libraries it needs (the chart's local-node values use it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/bin/images"
tag=${SORTIE_IMAGE_TAG:-dev}
mkdir -p "$out"
log() { printf '[images] %s\n' "$*" >&2; }

load=yes
build=yes
want=()
for arg in "$@"; do
  case "$arg" in
    --no-load) load=no ;;
    --prebuilt) build=no ;;
    -*) echo "usage: hack/images.sh [--prebuilt] [--no-load] [image...]" >&2; exit 2 ;;
    *) want+=("$arg") ;;
  esac
done
# image name : module : command (module only documents where it lives)
all=(
  "workspace-agent:services/workspace-operator:workspace-agent"
  "auth:services/auth:auth"
  "mission-control:services/mission-control:mission-control"
  "workspace-operator:services/workspace-operator:workspace-operator"
  "library:services/library:library"
  "redis::"
)
wanted() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

[ "$build" = no ] || make -s -C "$root" build
(cd "$root/hack/tools" && CGO_ENABLED=0 go build -trimpath -o "$out/.ocipack" ./cmd/ocipack)

certs=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  certs=(-file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644)
fi

built=()
for entry in "${all[@]}"; do
  IFS=: read -r name module cmd <<<"$entry"
  wanted "$name" || continue
  image="localhost/sortie-$name:$tag"
  archive="$out/sortie-$name.oci.tar"
  if [ "$name" = redis ]; then
    server=$(command -v redis-server || true)
    if [ -z "$server" ]; then
      log "skip sortie-redis: no redis-server on this machine (hack/deps.sh installs it)"
      continue
    fi
    server=$(readlink -f "$server")
    files=(-file "$server:/usr/local/bin/redis-server:0755")
    # The loader (which must be executable) and every library ldd names,
    # at the same paths.
    while read -r lib; do
      files+=(-file "$(readlink -f "$lib"):$lib:0755")
    done < <(ldd "$server" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}')
    "$out/.ocipack" -name "$image" -o "$archive" "${files[@]}" \
      -env LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu \
      -entrypoint /usr/local/bin/redis-server -user 65532:65532 -workdir /data
  else
    # The workspace-agent is copied into workspace Pods by an init container
    # and runs as PID 1 of the distro image; the others are services.
    [ -x "$root/bin/$cmd" ] || { log "bin/$cmd is missing: run make build"; exit 1; }
    "$out/.ocipack" -name "$image" -o "$archive" "${certs[@]}" \
      -file "$root/bin/$cmd:/$cmd:0755" -entrypoint "/$cmd" -user 65532:65532 \
      -env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  fi
  log "built $image ($(du -h "$archive" | cut -f1))"
  built+=("$archive")
done

if [ "$load" = yes ] && [ ${#built[@]} -gt 0 ] && "$root/hack/cluster.sh" is-up >/dev/null 2>&1; then
  for archive in "${built[@]}"; do
    "$root/hack/cluster.sh" load-image "$archive"
  done
fi
