#!/usr/bin/env bash
# Builds Sortie's own images from our binaries, without Docker, into
# bin/images/*.oci.tar (hack/tools/cmd/ocipack), and loads them into the local
# node when it is up (hack/cluster.sh imports bin/images/ at every start too).
#
#   hack/images.sh            build (and load, if the cluster is up)
#   hack/images.sh --no-load  build only
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/bin/images"
tag=${SORTIE_IMAGE_TAG:-dev}
mkdir -p "$out/.build"
log() { printf '[images] %s\n' "$*" >&2; }

(cd "$root/hack/tools" && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$out/.ocipack" ./cmd/ocipack)

# The workspace-agent: one static binary, non-root by default (the Pod's
# init container only copies it; the distro container runs it).
(cd "$root/services/workspace-operator" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
  -o "$out/.build/workspace-agent" ./cmd/workspace-agent)
"$out/.ocipack" -name "localhost/sortie-workspace-agent:$tag" -o "$out/sortie-workspace-agent.oci.tar" \
  -file "$out/.build/workspace-agent:/workspace-agent:0755" -entrypoint /workspace-agent -user 65532:65532
log "built localhost/sortie-workspace-agent:$tag ($(du -h "$out/sortie-workspace-agent.oci.tar" | cut -f1))"

if [ "${1:-}" != --no-load ] && "$root/hack/cluster.sh" is-up >/dev/null 2>&1; then
  "$root/hack/cluster.sh" load-image "$out/sortie-workspace-agent.oci.tar"
fi
