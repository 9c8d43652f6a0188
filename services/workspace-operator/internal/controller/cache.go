package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/services/workspace-operator/internal/config"
)

// CacheOptions is the operator's cache (the controller's and the REST
// API's): the workspace namespace only, and in it only what the operator
// made. Secrets are its own alone — those labelled sortie.dev/workspace
// (agent tokens, the host runtimes', workspaces' env Secrets) — so it
// never lists, watches or holds any other Secret, even when the
// workspace namespace is shared with the control plane; Pods and volumes
// are its own (app.kubernetes.io/managed-by); of ConfigMaps, only the
// library's revision. A Get of anything else through the cache is "not
// found", never a read at the API server.
func CacheOptions(cfg *config.Config) cache.Options {
	own := klabels.SelectorFromSet(klabels.Set{LabelManagedBy: managedByValue})
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}:                {Label: OwnSecrets()},
		&corev1.Pod{}:                   {Label: own},
		&corev1.PersistentVolumeClaim{}: {Label: own},
	}
	if cfg.LibraryConfigMap != "" {
		byObject[&corev1.ConfigMap{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", cfg.LibraryConfigMap)}
	}
	return cache.Options{
		DefaultNamespaces: map[string]cache.Config{cfg.Namespace: {}},
		ByObject:          byObject,
	}
}

// OwnSecrets selects the Secrets the operator reads: those labelled with
// the workspace (or host runtime) they belong to.
func OwnSecrets() klabels.Selector {
	req, err := klabels.NewRequirement(LabelWorkspace, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid label key
	}
	return klabels.NewSelector().Add(*req)
}
