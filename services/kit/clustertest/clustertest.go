// Package clustertest gives tests the real single-node cluster that
// hack/cluster.sh runs on this machine (kubelet, containerd, runc: Pods are
// real containers). `make test` starts it and builds the images before any
// test runs; every test binary shares that one node, and each test works in
// its own namespace, deleted (with all it holds) when the test ends.
//
// SORTIE_TEST_KUBECONFIG points the tests at another cluster instead.
package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"sortie.dev/services/kit/testwait"
)

// Cluster is a running cluster and clients for it.
type Cluster struct {
	Kubeconfig string
	Config     *rest.Config
	Clientset  kubernetes.Interface
	// StateDir is hack/cluster.sh's state folder; empty for an external cluster.
	StateDir string
	repo     string
}

// Connect connects to the local cluster, which must be up already: `make
// test` and `make cluster-up` start it. A test never starts it, because a
// first start installs packages and builds Kubernetes, which no test's
// deadline allows for.
func Connect(ctx context.Context) (*Cluster, error) {
	if kc := os.Getenv("SORTIE_TEST_KUBECONFIG"); kc != "" {
		return connect(kc, "", "")
	}
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(repo, "hack", "cluster.sh")
	if out, err := exec.CommandContext(ctx, script, "is-up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("the local Kubernetes node is not up: start it with `make cluster-up` (make test does) and run the test again (hack/cluster.sh is-up: %v %s)", err, bytes.TrimSpace(out))
	}
	kc, err := exec.CommandContext(ctx, script, "kubeconfig").Output()
	if err != nil {
		return nil, fmt.Errorf("hack/cluster.sh kubeconfig: %w", err)
	}
	path := strings.TrimSpace(string(kc))
	return connect(path, filepath.Dir(path), repo)
}

func connect(kubeconfig, state, repo string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	return &Cluster{Kubeconfig: kubeconfig, Config: cfg, Clientset: cs, StateDir: state, repo: repo}, nil
}

// Require is Connect for a test. Under -short (make test-unit) it skips
// the test, saying so; otherwise a node that is not up fails the test
// (never skips it: a skipped node test would pass CI without proving
// anything).
func Require(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("node test: needs the local Kubernetes node, so it is skipped under -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Connect(ctx)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	return c
}

// LoadImage imports an OCI image archive (from hack/tools/cmd/ocipack) into
// the node, so Pods can use it with imagePullPolicy IfNotPresent.
func (c *Cluster) LoadImage(ctx context.Context, archive string) error {
	if c.repo == "" {
		return errors.New("load image: an external cluster cannot side-load images")
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.repo, "hack", "cluster.sh"), "load-image", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("load image %s: %w: %s", archive, err, out)
	}
	return nil
}

// Namespace creates a namespace for one test and deletes it (and so
// everything in it) when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"sortie.dev/test": "true"}}}
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	// Deleting the namespace deletes everything in it; `make test` checks
	// afterwards that nothing a test made is left on the node.
	t.Cleanup(func() {
		_ = c.Clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	// Pods need the default ServiceAccount, which a controller adds shortly.
	testwait.Eventually(t, 30*time.Second, "namespace "+name+" has its default service account", func() (bool, string) {
		_, err := c.Clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("namespace %s: read its default service account: %v", name, err)
		}
		return err == nil, fmt.Sprint(err)
	})
	return name
}

// DebianImage is the node's general-purpose image (debootstrap bookworm
// with ca-certificates, curl, git and procps).
const DebianImage = "localhost/debian:bookworm"

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (the folder holding go.work) above the working directory")
		}
		dir = parent
	}
}

// RequireImages fails the test unless the node holds each of Sortie's
// images named (default: the workspace-agent, which every workspace
// needs), as localhost/sortie-<name>:<SORTIE_IMAGE_TAG or dev>. `make test`
// and `make images` build them from the working tree and load them; a
// test never builds one, since that takes minutes on a cold machine.
func (c *Cluster) RequireImages(t testing.TB, names ...string) {
	t.Helper()
	if c.repo == "" {
		return // an external cluster pulls the images its operator names
	}
	if len(names) == 0 {
		names = []string{"workspace-agent"}
	}
	out, err := exec.Command("ctr", "--address", filepath.Join(c.StateDir, "run", "containerd", "containerd.sock"),
		"-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil {
		t.Fatalf("clustertest: list the node's images: %v", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var missing []string
	for _, n := range names {
		if ref := ImageRef(n); !have[ref] {
			missing = append(missing, ref)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("clustertest: the node lacks %s: build and load them with `make images` (make test does) and run the test again", strings.Join(missing, ", "))
	}
}

// ImageRef is the reference of one of Sortie's own images on the node.
func ImageRef(name string) string {
	tag := os.Getenv("SORTIE_IMAGE_TAG")
	if tag == "" {
		tag = "dev"
	}
	return "localhost/sortie-" + name + ":" + tag
}
