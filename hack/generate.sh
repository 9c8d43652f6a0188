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
# The Helm chart templates its CRD and the operator's Role from copies of
# both (charts/sortie/templates/crds.yaml, workspace-operator.yaml), so that
# helm upgrade upgrades the CRD; test/chart checks the copies are current.
chart="$root/charts/sortie/files"
mkdir -p "$chart/crds" "$chart/rbac"
rm -f "$chart"/crds/*.yaml
cp "$root"/api/crds/*.yaml "$chart/crds/"
cp "$root/services/workspace-operator/config/rbac/role.yaml" "$chart/rbac/workspace-operator-role.yaml"
echo "generated: api/v1alpha1/zz_generated.deepcopy.go, api/crds/, services/workspace-operator/config/rbac/, charts/sortie/files/" >&2
