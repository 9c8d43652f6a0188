#!/usr/bin/env bash
# Regenerates everything generated: deepcopy functions and the CRD manifests
# from the API types (controller-gen, pinned in hack/tools/go.mod). Never edit
# the output by hand; `make verify` fails when it is out of date.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/hack/tools"
go tool controller-gen \
  object:headerFile="$root/hack/boilerplate.go.txt" \
  crd \
  paths=sortie.dev/api/... \
  output:crd:artifacts:config="$root/api/crds"
# The workspace-operator's least-privilege rules, from its +kubebuilder:rbac markers.
go tool controller-gen \
  rbac:roleName=sortie-workspace-operator \
  paths=sortie.dev/services/workspace-operator/internal/... \
  output:rbac:artifacts:config="$root/services/workspace-operator/config/rbac"
echo "generated: api/v1alpha1/zz_generated.deepcopy.go, api/crds/, services/workspace-operator/config/rbac/" >&2
