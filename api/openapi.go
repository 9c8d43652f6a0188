// Package api holds Sortie's public contracts: the OpenAPI description of
// every route behind the ingress (openapi.yaml) and, in v1alpha1, the
// Workspace custom resource types.
package api

import _ "embed"

// OpenAPI is the document in openapi.yaml. Tests of every service check
// their routes and responses against it.
//
//go:embed openapi.yaml
var OpenAPI []byte
