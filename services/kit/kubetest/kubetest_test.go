package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var widgetGVK = schema.GroupVersionKind{Group: "example.sortie.dev", Version: "v1", Kind: "Widget"}

func widget(name string, size int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(widgetGVK)
	u.SetNamespace("default")
	u.SetName(name)
	u.Object["spec"] = map[string]any{"size": size}
	return u
}

func TestStartInstallsCRDs(t *testing.T) {
	env := Start(t, Options{CRDDirectoryPaths: []string{filepath.Join("testdata", "crds")}})

	tests := []struct {
		name        string
		size        int64
		wantInvalid bool
	}{
		{name: "big", size: 3},
		{name: "smallest", size: 1},
		{name: "zero", size: 0, wantInvalid: true},
		{name: "negative", size: -2, wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := env.Client.Create(t.Context(), widget(tt.name, tt.size))
			if tt.wantInvalid {
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.size") {
					t.Fatalf("Create(size %d) error = %v, want Invalid naming spec.size", tt.size, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create(size %d): %v", tt.size, err)
			}
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(widgetGVK)
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: tt.name}, got); err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(map[string]any{"size": tt.size}, got.Object["spec"]); diff != "" {
				t.Errorf("stored spec mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBinaryDir(t *testing.T) {
	t.Run("KUBEBUILDER_ASSETS", func(t *testing.T) {
		t.Setenv("KUBEBUILDER_ASSETS", "/opt/k8s")
		got, err := BinaryDir()
		if err != nil || got != "/opt/k8s" {
			t.Errorf("BinaryDir() = %q, %v; want /opt/k8s", got, err)
		}
	})
	t.Run("repository", func(t *testing.T) {
		t.Setenv("KUBEBUILDER_ASSETS", "")
		got, err := BinaryDir()
		if err != nil {
			t.Fatal(err)
		}
		// This package lives at <root>/services/kit/kubetest.
		root, err := filepath.Abs(filepath.Join("..", "..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(root, "bin", "k8s", KubeVersion); got != want {
			t.Errorf("BinaryDir() = %q, want %q", got, want)
		}
	})
}

func TestRepoRoot(t *testing.T) {
	tmp := t.TempDir()
	deep := filepath.Join(tmp, "repo", "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "repo", "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from    string
		want    string
		wantErr bool
	}{
		{from: deep, want: filepath.Join(tmp, "repo")},
		{from: filepath.Join(tmp, "repo"), want: filepath.Join(tmp, "repo")},
		{from: tmp, wantErr: true},
	}
	for _, tt := range tests {
		got, err := repoRoot(tt.from)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("repoRoot(%q) = %q, %v; want %q, error %t", tt.from, got, err, tt.want, tt.wantErr)
		}
	}
}

// Without binaries, starting fails with a message naming what builds them.
func TestStartWithoutBinaries(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, stop, err := start(Options{}, t.Logf)
	if stop != nil {
		t.Error("start returned something to stop without starting anything")
	}
	if err == nil {
		t.Fatal("start succeeded without binaries")
	}
	for _, want := range []string{"kube-apiserver", "etcd", "hack/kube-binaries.sh", "make kube-binaries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// A shared control plane starts once, and each test gets a namespace of
// its own in it.
func TestShared(t *testing.T) {
	s := NewShared(Options{CRDDirectoryPaths: []string{filepath.Join("testdata", "crds")}})
	var first *Env
	t.Run("first", func(t *testing.T) { first = s.Get(t) })
	t.Run("second", func(t *testing.T) {
		if got := s.Get(t); got != first {
			t.Fatal("a second Get started another control plane")
		}
		a, b := first.Namespace(t), first.Namespace(t)
		if a == b {
			t.Fatalf("two namespaces share the name %s", a)
		}
		var ns corev1.Namespace
		if err := first.Client.Get(t.Context(), client.ObjectKey{Name: a}, &ns); err != nil {
			t.Fatalf("the namespace is not there: %v", err)
		}
	})
	if s.stop != nil {
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUserConfigHasOnlyWhatRBACGrants(t *testing.T) {
	env := Start(t, Options{})
	cfg := env.UserConfig(t, "nobody")
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := c.List(context.Background(), &pods, client.InNamespace("default")); !apierrors.IsForbidden(err) {
		t.Errorf("a user without roles listed pods: %v, want Forbidden", err)
	}
}
