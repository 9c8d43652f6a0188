package controller

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/kubetest"
	"sortie.dev/services/kit/testclock"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/config"
)

func testScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testConfig(t testing.TB, env map[string]string) *config.Config {
	base := map[string]string{"SORTIE_WORKSPACE_NAMESPACE": "default", "SORTIE_LEADER_ELECTION": "false", "SORTIE_AUTH_DEV_MODE": "true"}
	for k, v := range env {
		base[k] = v
	}
	c, err := config.Load(nil, func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return c
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

type env struct {
	client client.Client
	agent  *agentAnswers
	clock  *testclock.Clock
	stop   func()
	start  func()
}

// startOperator runs the reconciler in a real manager against a real
// apiserver with the Workspace CRD installed.
func startOperator(t *testing.T, cfgEnv map[string]string) *env {
	t.Helper()
	s := testScheme(t)
	kube := kubetest.Start(t, kubetest.Options{CRDDirectoryPaths: []string{filepath.Join("..", "..", "..", "..", "api", "crds")}, Scheme: s})
	cfg := testConfig(t, cfgEnv)
	e := &env{client: kube.Client, agent: &agentAnswers{st: agentapi.InitStatus{State: agentapi.InitRunning}}, clock: testclock.New(time.Now())}
	var running []func() // each manager's stop
	e.start = func() {
		mgr, err := ctrl.NewManager(kube.Config, ctrl.Options{
			Scheme:                 s,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// Each test starts its own manager; controller names are
			// otherwise unique per process.
			Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := &WorkspaceReconciler{Client: mgr.GetClient(), Scheme: s, Config: cfg, Prober: e.agent,
			Recorder: mgr.GetEventRecorder("workspace-operator"), Now: e.clock.Now}
		if err := r.SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(ctx); err != nil {
				t.Errorf("manager: %v", err)
			}
		}()
		running = append(running, func() { cancel(); <-done })
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

func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := f()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within 30s; last seen: %s", what, last)
}

func getWS(t *testing.T, e *env, name string) *v1alpha1.Workspace {
	t.Helper()
	ws := &v1alpha1.Workspace{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, ws); err != nil {
		t.Fatal(err)
	}
	return ws
}

func getPod(e *env, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := e.client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, pod)
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
