// Package kubetest starts a real etcd and kube-apiserver for a test, with
// controller-runtime's envtest and the binaries the project builds into
// bin/k8s/<KubeVersion>/ (hack/kube-binaries.sh). Nothing else of a cluster
// runs: no controllers, no scheduler, no kubelet, so Pods never start and
// garbage collection never happens unless a test runs them itself.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"sortie.dev/services/kit/testwait"
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

// RoleUserConfig is UserConfig for a user granted, in namespace ns alone,
// the rules of the ClusterRole in roleFile (controller-gen's
// config/rbac/role.yaml), bound by a Role as a chart installs it: a
// component run with it proves its generated rules suffice there.
func (e *Env) RoleUserConfig(t testing.TB, ns, name, roleFile string) *rest.Config {
	t.Helper()
	raw, err := os.ReadFile(roleFile)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	var generated rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &generated); err != nil {
		t.Fatalf("kubetest: %s: %v", roleFile, err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: generated.Name, Namespace: ns}, Rules: generated.Rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: generated.Name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := e.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("kubetest: grant %s the rules of %s: %v", name, roleFile, err)
		}
	}
	return e.UserConfig(t, name)
}

// Start starts etcd + kube-apiserver for one test, installs the CRDs, and
// registers t.Cleanup to stop them. Under -short (make test-unit) it skips
// the test. Missing binaries are a t.Fatalf naming the command that builds
// them: a skipped test would pass in CI without proving anything. A package
// whose tests each need an apiserver shares one instead (Shared).
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	skipShort(t)
	env, stop, err := start(opts, t.Logf)
	if stop != nil {
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("kubetest: stop control plane: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return env
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs kube-apiserver and etcd (bin/k8s), so it is skipped under -short (make test runs it)")
	}
}

// start starts the control plane. stop, when not nil, must be called even
// when err is not: envtest leaves what it started running when a later
// step (such as installing CRDs) fails.
func start(opts Options, logf func(string, ...any)) (env *Env, stop func() error, err error) {
	dir, err := BinaryDir()
	if err != nil {
		return nil, nil, err
	}
	if err := checkBinaries(dir); err != nil {
		return nil, nil, fmt.Errorf("%w\nbuild them with `hack/kube-binaries.sh` (or `make kube-binaries`) from the repository root, or point KUBEBUILDER_ASSETS at a folder holding them", err)
	}
	sch := opts.Scheme
	if sch == nil {
		sch = scheme.Scheme
	}
	// The processes write to out, shown only when starting fails: the
	// envtest error alone ("timeout waiting for process kube-apiserver to
	// start") never says why.
	out := &syncBuffer{}
	te := &envtest.Environment{
		Scheme:                   sch,
		CRDDirectoryPaths:        opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing:    true, // a mistyped path must not mean "no CRDs"
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: testwait.Scaled(processTimeout),
		ControlPlaneStopTimeout:  testwait.Scaled(processTimeout),
	}
	te.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(dir, "etcd"), Out: out, Err: out}
	api := te.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(dir, "kube-apiserver")
	api.Out, api.Err = out, out
	configureAPIServer(api.Configure())

	stop = te.Stop
	began := time.Now()
	cfg, err := te.Start()
	if err != nil {
		return nil, stop, fmt.Errorf("start control plane: %w\n--- etcd and kube-apiserver output (tail) ---\n%s", err, out)
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(processTimeout))
	defer cancel()
	if err := waitOutCreateDelay(ctx, cfg, te.CRDs); err != nil {
		return nil, stop, err
	}
	logf("kubetest: kube-apiserver %s with %d CRDs ready in %s (of which %s waiting for new CRDs to accept creates)",
		KubeVersion, len(te.CRDs), time.Since(began).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		return nil, stop, fmt.Errorf("client: %w", err)
	}
	return &Env{Config: cfg, Client: c, env: te}, stop, nil
}

// Shared is one control plane for all the tests of a package: starting
// one takes seconds, so a package's tests share it, each working in a
// namespace of its own (Env.Namespace). Declare it as a package variable
// and stop it from TestMain:
//
//	var kube = kubetest.NewShared(kubetest.Options{CRDDirectoryPaths: ...})
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
//
// It starts on the first Get, so a package run under -short, or with
// -run naming tests that need none, starts nothing.
type Shared struct {
	opts Options
	once sync.Once
	env  *Env
	stop func() error
	err  error
}

// NewShared returns a control plane that starts on first use.
func NewShared(opts Options) *Shared { return &Shared{opts: opts} }

// Get returns the shared control plane, starting it on the first call; a
// start that failed fails every test that asks. Under -short it skips the
// test.
func (s *Shared) Get(t testing.TB) *Env {
	t.Helper()
	skipShort(t)
	s.once.Do(func() { s.env, s.stop, s.err = start(s.opts, t.Logf) })
	if s.err != nil {
		t.Fatalf("kubetest: %v", s.err)
	}
	return s.env
}

// Run runs the package's tests and then stops the control plane if one
// started; its result is TestMain's exit code.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.stop != nil {
		if err := s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stop control plane: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Namespace creates a namespace with a name of its own for one test. The
// apiserver runs no namespace controller, so nothing is deleted: the
// control plane goes away with the test binary.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "test-" + hex.EncodeToString(b[:])}}
	if err := e.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	return ns.Name
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
