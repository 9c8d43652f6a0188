package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"sortie.dev/services/kit/testwait"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeConfig is the admin's access to the cluster the platform runs on.
func kubeConfig(t *testing.T) *rest.Config {
	t.Helper()
	out, err := exec.Command(filepath.Join(sortie.root, "hack", "cluster.sh"), "kubeconfig").Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A Workspace applied through the Kubernetes API, as with kubectl apply,
// is a workspace like any other: listed over REST, ready, usable.
func TestWorkspaceFromManifest(t *testing.T) {
	t.Parallel()
	dyn, err := dynamic.NewForConfig(kubeConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	manifest := `
apiVersion: sortie.dev/v1alpha1
kind: Workspace
metadata:
  name: from-yaml
spec:
  displayName: from-yaml
  type: container
  distro: debian-bookworm
  envVars: {ORIGIN: manifest}
`
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "sortie.dev", Version: "v1alpha1", Resource: "workspaces"}
	created, err := dyn.Resource(gvr).Namespace(sortie.namespace).Create(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the Workspace through the Kubernetes API: %v", err)
	}
	id := string(created.GetUID())

	u := loggedIn(t)
	var list []workspace
	u.do("GET", "/api/workspaces", nil).decode(t, &list)
	found := false
	for _, ws := range list {
		found = found || (ws.ID == id && ws.Name == "from-yaml")
	}
	if !found {
		t.Errorf("the applied Workspace %s is not in the REST list", id)
	}
	u.waitStatus(id, "ready")
	if r := u.exec(id, map[string]any{"command": "echo $ORIGIN"}); r.Stdout != "manifest\n" {
		t.Errorf("exec in the applied workspace: %+v", r)
	}
	if a := u.do("DELETE", "/api/workspaces/"+id, nil); a.status != 200 {
		t.Errorf("delete over REST: %d", a.status)
	}
	testwait.Eventually(t, time.Minute, "the Workspace gone from Kubernetes", func() (bool, string) {
		_, err := dyn.Resource(gvr).Namespace(sortie.namespace).Get(context.Background(), "from-yaml", metav1.GetOptions{})
		return err != nil, "still there"
	})
}
