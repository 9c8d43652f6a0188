package chart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testwait"
)

// fieldManager names the tests' writes.
const fieldManager = "sortie-chart-test"

// applier applies rendered objects with server-side apply.
type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// errNotServed means the cluster has no API for the object's kind (a
// ServiceMonitor without the Prometheus Operator, an HTTPRoute without
// Gateway API).
var errNotServed = errors.New("kind not served by this cluster")

func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%w: %s", errNotServed, gvk)
	}
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Apply(ctx, o.GetName(), o, opts)
	return err
}

// ensureCRD installs the Workspace CRD when the cluster lacks it (as
// make run does); the dry runs then validate against the real one.
func ensureCRD(t *testing.T, a *applier) {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "api", "crds", "sortie.dev_workspaces.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd unstructured.Unstructured
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	_, err = a.dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if err := a.apply(ctx, &crd, false); err != nil {
			t.Fatalf("install the Workspace CRD: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestDryRunOnCluster: every object of every value set is accepted by the
// real kube-apiserver (server-side apply, dry run: validation, defaulting,
// admission, the CRD's schema) in a namespace of the test's own.
func TestDryRunOnCluster(t *testing.T) {
	cl := clustertest.Require(t)
	c := loadChart(t)
	a := newApplier(t, cl.Config)
	ensureCRD(t, a)
	ns := cl.Namespace(t)
	wsns := cl.Namespace(t)
	for name, set := range valueSets(wsns) {
		t.Run(name, func(t *testing.T) {
			// The default workspace namespace (<release>-workspaces) is not
			// the test's: objects in it are checked in the test's own.
			r, err := Render(c, "sortie", ns, withWorkspaceNamespace(set.values, wsns))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(2*time.Minute))
			defer cancel()
			applied := 0
			for _, o := range r.Objects {
				err := a.apply(ctx, o, true)
				switch {
				case errors.Is(err, errNotServed):
					t.Logf("skipped %s %s: %v", o.GetKind(), o.GetName(), err)
				case err != nil:
					t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				default:
					applied++
				}
			}
			t.Logf("%d of %d objects accepted", applied, len(r.Objects))
		})
	}
}

// withWorkspaceNamespace is values with workspaces.namespace set to ns
// when they name none.
func withWorkspaceNamespace(values map[string]any, ns string) map[string]any {
	out := map[string]any{}
	for k, v := range values {
		out[k] = v
	}
	w := map[string]any{}
	if old, ok := values["workspaces"].(map[string]any); ok {
		for k, v := range old {
			w[k] = v
		}
	}
	if _, ok := w["namespace"]; !ok {
		w["namespace"] = ns
	}
	out["workspaces"] = w
	return out
}
