package chart

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sortie.dev/services/kit/kubetest"
	"sortie.dev/services/kit/testwait"
)

// workspace is a Workspace manifest as a user would apply it with kubectl.
func workspace(ns, name string, spec map[string]any) *unstructured.Unstructured {
	base := map[string]any{"displayName": name, "type": "container"}
	for k, v := range spec {
		base[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "sortie.dev/v1alpha1", "kind": "Workspace",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": base,
	}}
}

// TestAdmissionPolicy: the chart's ValidatingAdmissionPolicy, on a real
// apiserver, refuses Workspaces of the workspace namespace whose requests or
// limits are above workspaces.resources.max or whose RuntimeClass is not
// allowed, whoever applies them; it leaves other namespaces and unchanged
// fields alone.
func TestAdmissionPolicy(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	k := kubetest.Start(t, kubetest.Options{CRDDirectoryPaths: []string{filepath.Join(root, "api", "crds")}})
	a := newApplier(t, k.Config)
	ns, wsns, other := k.Namespace(t), k.Namespace(t), k.Namespace(t)
	r := render(t, loadChart(t), ns, map[string]any{"workspaces": map[string]any{
		"namespace": wsns, "runtimeClasses": []any{"gvisor", "kata"},
		"resources": map[string]any{"max": map[string]any{"cpu": 4, "memory": "8Gi", "ephemeral-storage": "20Gi"}},
	}})
	ctx := context.Background()
	// Made before the policy (or before a maximum was lowered).
	old := workspace(wsns, "old", map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1Ti"}}})
	if err := a.apply(ctx, old, false); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		objs := r.Find(kind)
		if len(objs) != 1 {
			t.Fatalf("%d %s rendered, want 1", len(objs), kind)
		}
		for _, o := range objs {
			if err := a.apply(ctx, o, false); err != nil {
				t.Fatalf("apply %s: %v", kind, err)
			}
		}
	}
	resources := func(kind, name string, q any) map[string]any {
		return map[string]any{"resources": map[string]any{kind: map[string]any{name: q}}}
	}
	tests := []struct {
		name string
		ns   string
		spec map[string]any
		want string // "" = accepted
	}{
		{"within the maxima", wsns, map[string]any{"resources": map[string]any{
			"requests": map[string]any{"cpu": "4", "memory": "8Gi"}, "limits": map[string]any{"cpu": 4, "ephemeral-storage": "20Gi"}}}, ""},
		{"no resources", wsns, nil, ""},
		{"an allowed class", wsns, map[string]any{"runtimeClassName": "kata"}, ""},
		{"cpu limit above", wsns, resources("limits", "cpu", "4001m"), "the cpu limit 4001m is above the maximum 4"},
		{"memory request above", wsns, resources("requests", "memory", "9Gi"), "the memory request 9Gi is above the maximum 8Gi"},
		{"storage limit above", wsns, resources("limits", "ephemeral-storage", "1Ti"), "the ephemeral-storage limit 1Ti is above the maximum 20Gi"},
		{"a class not allowed", wsns, map[string]any{"runtimeClassName": "runc"}, "the RuntimeClass runc is not one the operator allows (gvisor, kata)"},
		{"another namespace", other, resources("limits", "memory", "1Ti"), ""},
	}
	// A new policy takes a moment to reach the apiserver's admission: wait
	// until a Workspace it must refuse is refused.
	probe := 0
	testwait.True(t, 30*time.Second, "the policy in force", func() bool {
		probe++
		err := a.apply(ctx, workspace(wsns, fmt.Sprintf("probe-%d", probe), resources("limits", "cpu", "64")), true)
		return err != nil && strings.Contains(err.Error(), "above the maximum")
	})
	for i, tc := range tests {
		err := a.apply(ctx, workspace(tc.ns, fmt.Sprintf("ws-%d", i), tc.spec), false)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want refused with %q", tc.name, err, tc.want)
		}
	}
	// A Workspace that does not change its resources is never refused, so
	// a lowered maximum does not lock existing ones (the operator's labels,
	// rebuilds); changing them is checked.
	kept := workspace(wsns, "old", map[string]any{"rebuild": 1, "resources": map[string]any{"limits": map[string]any{"memory": "1Ti"}}})
	kept.SetLabels(map[string]string{"sortie.dev/owner": "alice"})
	if err := a.apply(ctx, kept, false); err != nil {
		t.Errorf("an update that keeps the resources: %v", err)
	}
	raised := workspace(wsns, "old", map[string]any{"rebuild": 1, "resources": map[string]any{"limits": map[string]any{"memory": "2Ti"}}})
	if err := a.apply(ctx, raised, false); err == nil || !strings.Contains(err.Error(), "above the maximum") {
		t.Errorf("an update that raises the resources: %v, want refused", err)
	}
}
