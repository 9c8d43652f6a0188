// Package v1alpha1 is the sortie.dev/v1alpha1 API: the Workspace custom
// resource, the source of truth for a workspace whether it was made over
// REST or with kubectl.
//
// +kubebuilder:object:generate=true
// +groupName=sortie.dev
package v1alpha1
