package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testclock"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/config"
)

// testConfig is the operator's configuration for a test whose workspaces
// live in ns, with env on top of the defaults.
func testConfig(t testing.TB, ns string, env map[string]string) *config.Config {
	t.Helper()
	base := map[string]string{"SORTIE_LEADER_ELECTION": "false", "SORTIE_AUTH_DEV_MODE": "true"}
	for k, v := range env {
		base[k] = v
	}
	base["SORTIE_WORKSPACE_NAMESPACE"] = ns
	c, err := config.Load(nil, func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newManager makes a manager for a test whose objects live in the
// operator's namespace (op.Namespace). Its cache is the operator's
// (CacheOptions): that namespace only, so objects another test left in its
// namespace are never reconciled by this test's manager.
func newManager(t testing.TB, cfg *rest.Config, op *config.Config) ctrl.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(op),
		// Each test starts its own manager; controller names are
		// otherwise unique per process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// agentAnswers is a stand-in Prober for tests that run without Pods
// (the apiserver alone has no kubelet); real agents answer in the node tests.
type agentAnswers struct {
	mu     sync.Mutex
	st     agentapi.InitStatus
	dirs   map[string]bool // made by EnsureDir
	dirErr error
}

func (a *agentAnswers) EnsureDir(_ context.Context, _, _, dir string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dirErr != nil {
		return a.dirErr
	}
	if a.dirs == nil {
		a.dirs = map[string]bool{}
	}
	a.dirs[dir] = true
	return nil
}

func (a *agentAnswers) made(dir string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dirs[dir]
}

func (a *agentAnswers) failDirs(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dirErr = err
}

func (a *agentAnswers) InitStatus(context.Context, string, string) (agentapi.InitStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st, nil
}

func (a *agentAnswers) set(st agentapi.InitStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st = st
}

// readCounter is the reconciler's client, counting the reads of each
// Workspace: every reconcile of a Workspace starts by reading it, so a
// second read means a first reconcile has finished.
type readCounter struct {
	client.Client
	mu    sync.Mutex
	reads map[string]int
	// unindexed counts lists of Workspaces without a field selector: a
	// list of every workspace.
	unindexed int
}

func (c *readCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*v1alpha1.WorkspaceList); ok {
		lo := (&client.ListOptions{}).ApplyOptions(opts)
		if lo.FieldSelector == nil || lo.FieldSelector.Empty() {
			c.mu.Lock()
			c.unindexed++
			c.mu.Unlock()
		}
	}
	return c.Client.List(ctx, list, opts...)
}

func (c *readCounter) unindexedLists() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unindexed
}

func (c *readCounter) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*v1alpha1.Workspace); ok {
		c.mu.Lock()
		c.reads[key.Name]++
		c.mu.Unlock()
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// reconciled says whether this manager has finished a reconcile of the
// Workspace name.
func (c *readCounter) reconciled(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[name] >= 2
}

type env struct {
	client client.Client
	ns     string // the test's namespace, the only one the operator sees
	agent  *agentAnswers
	clock  *testclock.Clock
	stop   func()
	start  func() *readCounter
	// r and reads are the reconciler of the latest start and its client.
	r     *WorkspaceReconciler
	reads *readCounter
}

// startOperator runs the reconciler in a real manager against the
// package's apiserver (with the Workspace CRD), in a namespace of the
// test's own.
func startOperator(t *testing.T, cfgEnv map[string]string) *env {
	t.Helper()
	k := kube.Get(t)
	ns := k.Namespace(t)
	cfg := testConfig(t, ns, cfgEnv)
	e := &env{client: k.Client, ns: ns, agent: &agentAnswers{st: agentapi.InitStatus{State: agentapi.InitRunning}}, clock: testclock.New(time.Now())}
	var running []func() // each manager's stop
	e.start = func() *readCounter {
		mgr := newManager(t, k.Config, cfg)
		reads := &readCounter{Client: mgr.GetClient(), reads: map[string]int{}}
		r := &WorkspaceReconciler{Client: reads, Scheme: testScheme, Config: cfg, Prober: e.agent,
			Recorder: mgr.GetEventRecorder("workspace-operator"), Now: e.clock.Now}
		if err := r.SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
		e.r, e.reads = r, reads
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(ctx); err != nil {
				t.Errorf("manager: %v", err)
			}
		}()
		running = append(running, func() { cancel(); <-done })
		return reads
	}
	e.stop = func() {
		for _, stop := range running {
			stop()
		}
		running = nil
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// settle bounds what the reconciler does against the apiserver alone:
// every step is a few reads and writes.
const settle = 30 * time.Second

// eventually waits for a step of the reconciler.
func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	testwait.Eventually(t, settle, what, f)
}

// newWS is a container workspace in ns; mutate adjusts its spec.
func newWS(ns, name string, mutate ...func(*v1alpha1.WorkspaceSpec)) *v1alpha1.Workspace {
	ws := &v1alpha1.Workspace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.WorkspaceSpec{
			DisplayName: "My " + name,
			Type:        v1alpha1.TypeContainer,
			Distro:      v1alpha1.DistroDebianBookworm,
			EnvVars:     map[string]string{"PROJECT": name},
			InitScript:  "#!/bin/sh\necho hello\n",
		},
	}
	for _, m := range mutate {
		m(&ws.Spec)
	}
	return ws
}

// key names an object in the test's namespace.
func (e *env) key(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: e.ns, Name: name}
}

func getWS(t *testing.T, e *env, name string) *v1alpha1.Workspace {
	t.Helper()
	ws := &v1alpha1.Workspace{}
	if err := e.client.Get(context.Background(), e.key(name), ws); err != nil {
		t.Fatal(err)
	}
	return ws
}

func getPod(e *env, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := e.client.Get(context.Background(), e.key(name), pod)
	return pod, err
}

func phaseIs(t *testing.T, e *env, name string, want v1alpha1.Phase) func() (bool, string) {
	return func() (bool, string) {
		ws := getWS(t, e, name)
		return ws.Status.Phase == want, string(ws.Status.Phase) + " " + ws.Status.LastError
	}
}

// runPod plays the kubelet: the Pod is scheduled and running with an IP.
func runPod(t *testing.T, e *env, name string) {
	t.Helper()
	pod, err := getPod(e, name)
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if err := e.client.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}
