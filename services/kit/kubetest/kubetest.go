// Package kubetest starts a real etcd and kube-apiserver for a test, with
// controller-runtime's envtest and the binaries the project builds into
// bin/k8s/<KubeVersion>/ (hack/kube-binaries.sh). Nothing else of a cluster
// runs: no controllers, no scheduler, no kubelet, so Pods never start and
// garbage collection never happens unless a test runs them itself.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the Kubernetes release whose binaries the tests run.
const KubeVersion = "v1.37.2"

// processTimeout bounds each start and stop of etcd and the apiserver. It is
// well above envtest's 20s default because several test packages may each
// start a control plane at once on a two-core CI runner.
const processTimeout = 60 * time.Second

// Options says what the control plane should hold before the test runs.
type Options struct {
	CRDDirectoryPaths []string        // CRD YAML folders to install before the test runs
	Scheme            *runtime.Scheme // nil: client-go's scheme
}

// Env is a running control plane and an admin client for it.
type Env struct {
	// Config authenticates as a member of system:masters.
	Config *rest.Config
	// Client reads and writes through the apiserver (no cache).
	Client client.Client

	env *envtest.Environment
}

// UserConfig returns a client config for a new user, authenticated by a
// client certificate, who may do only what RBAC grants it (the apiserver
// runs with RBAC). Tests prove a component's Role suffices by running the
// component with it.
func (e *Env) UserConfig(t testing.TB, name string, groups ...string) *rest.Config {
	t.Helper()
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("kubetest: add user %s: %v", name, err)
	}
	return u.Config()
}

// Start starts etcd + kube-apiserver, installs the CRDs, and registers
// t.Cleanup to stop them. Missing binaries are a t.Fatalf naming the command
// that builds them: a skipped test would pass in CI without proving anything.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir, err := BinaryDir()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
		return nil
	}
	if err := checkBinaries(dir); err != nil {
		t.Fatalf("kubetest: %v\nbuild them with `hack/kube-binaries.sh` (or `make kube-binaries`) from the repository root, or point KUBEBUILDER_ASSETS at a folder holding them", err)
		return nil
	}

	sch := opts.Scheme
	if sch == nil {
		sch = scheme.Scheme
	}
	// The processes write to out, shown only when starting fails: the
	// envtest error alone ("timeout waiting for process kube-apiserver to
	// start") never says why.
	out := &syncBuffer{}
	env := &envtest.Environment{
		Scheme:                   sch,
		CRDDirectoryPaths:        opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing:    true, // a mistyped path must not mean "no CRDs"
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: processTimeout,
		ControlPlaneStopTimeout:  processTimeout,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(dir, "etcd"), Out: out, Err: out}
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(dir, "kube-apiserver")
	api.Out, api.Err = out, out
	configureAPIServer(api.Configure())

	// Registered before starting: envtest.Start leaves whatever it already
	// started running when a later step (such as installing CRDs) fails.
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("kubetest: stop control plane: %v", err)
		}
	})
	began := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("kubetest: start control plane: %v\n--- etcd and kube-apiserver output (tail) ---\n%s", err, out)
		return nil
	}
	started := time.Now()
	if err := waitOutCreateDelay(t.Context(), cfg, env.CRDs); err != nil {
		t.Fatalf("kubetest: %v", err)
		return nil
	}
	t.Logf("kubetest: kube-apiserver %s with %d CRDs ready in %s (of which %s waiting for new CRDs to accept creates)",
		KubeVersion, len(env.CRDs), time.Since(began).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))

	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		t.Fatalf("kubetest: client: %v", err)
		return nil
	}
	return &Env{Config: cfg, Client: c, env: env}
}

// configureAPIServer sets the flags that make the apiserver start the same
// way on every machine, on top of envtest's defaults. (Turning off priority
// and fairness or admission plugins saved no measurable start time, so the
// apiserver otherwise behaves as in a real cluster.)
func configureAPIServer(args *envtest.Arguments) {
	// Advertise loopback rather than let the apiserver pick a host
	// interface, which fails outright on machines without a default route.
	args.Set("advertise-address", "127.0.0.1")
	// The endpoint reconciler refuses to publish a loopback address in the
	// "kubernetes" Service's endpoints, and nothing in a test reads them.
	args.Set("endpoint-reconciler-type", "none")
}

// crdCreateDelay is how long after a CRD becomes Established the apiserver
// holds every create of its resources for 2s (apiextensions-apiserver's
// customresource_handler.go, meant for HA apiservers that have not yet seen
// the CRD).
const crdCreateDelay = 2 * time.Second

// waitOutCreateDelay returns once none of crds is within crdCreateDelay of
// becoming Established, so that a test's first create answers at once
// instead of taking 2s and tripping short test deadlines.
func waitOutCreateDelay(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	if len(crds) == 0 {
		return nil
	}
	sch := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(sch); err != nil {
		return fmt.Errorf("CRD scheme: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		return fmt.Errorf("CRD client: %w", err)
	}
	var latest time.Time
	for _, crd := range crds {
		var got apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, &got); err != nil {
			return fmt.Errorf("read CRD %s: %w", crd.Name, err)
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.LastTransitionTime.After(latest) {
				latest = cond.LastTransitionTime.Time
			}
		}
	}
	select {
	case <-time.After(time.Until(latest.Add(crdCreateDelay))):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BinaryDir returns the folder holding the binaries: $KUBEBUILDER_ASSETS if
// set, else <repo root>/bin/k8s/<KubeVersion> where the repo root is found
// by walking up from the working directory to the folder holding go.work.
func BinaryDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "k8s", KubeVersion), nil
}

// repoRoot returns the nearest folder at or above dir that holds go.work.
func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find repository root: %w", err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repository root: no go.work in %s or any folder above it", dir)
		}
		d = parent
	}
}

// checkBinaries reports every binary envtest needs that dir lacks.
func checkBinaries(dir string) error {
	var missing []error
	for _, name := range []string{"etcd", "kube-apiserver"} {
		p := filepath.Join(dir, name)
		info, err := os.Stat(p)
		switch {
		case err != nil:
			missing = append(missing, fmt.Errorf("missing %s: %w", p, err))
		case info.IsDir() || info.Mode()&0o111 == 0:
			missing = append(missing, fmt.Errorf("%s is not an executable file", p))
		}
	}
	return errors.Join(missing...)
}

// syncBuffer keeps the last outputLimit bytes written by processes that
// write from their own goroutines; a long test must not hoard the
// apiserver's whole log in memory.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const outputLimit = 16 << 10

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if extra := len(b.buf) - outputLimit; extra > 0 {
		b.buf = append(b.buf[:0], b.buf[extra:]...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
