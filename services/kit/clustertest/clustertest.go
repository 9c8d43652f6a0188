// Package clustertest gives tests the real single-node cluster that
// hack/cluster.sh runs on this machine (kubelet, containerd, runc: Pods are
// real containers). Up starts it when it is not running and reuses it when
// it is, so every test binary shares one node; each test works in its own
// namespace.
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

// Up brings the local cluster up, or reuses the one already up, and
// connects to it. The first start on a machine builds binaries and images
// (minutes; `make test` does that before the tests run).
func Up(ctx context.Context) (*Cluster, error) {
	if kc := os.Getenv("SORTIE_TEST_KUBECONFIG"); kc != "" {
		return connect(kc, "", "")
	}
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(repo, "hack", "cluster.sh")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, script, "up")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hack/cluster.sh up: %w\n%s", err, out.String())
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

// Require is Up for a test: it fails the test (never skips it) when the
// cluster cannot be had.
func Require(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := Up(ctx)
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
	// Pods need the default ServiceAccount, which a controller adds shortly.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default service account: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = c.Clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
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

// BuildImages builds Sortie's own images from the working tree
// (hack/images.sh) and loads them into the node, so a test runs the code it
// was built from. With no names it builds what workspaces need, the
// workspace-agent image.
func (c *Cluster) BuildImages(ctx context.Context, images ...string) error {
	if c.repo == "" {
		return errors.New("build images: an external cluster cannot side-load images")
	}
	if len(images) == 0 {
		images = []string{"workspace-agent"}
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.repo, "hack", "images.sh"), images...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hack/images.sh: %w\n%s", err, out)
	}
	return nil
}
