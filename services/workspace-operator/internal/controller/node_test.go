package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// nodeEnv is the operator running against the real local node: Pods are
// real containers running the real workspace-agent in the Debian image.
type nodeEnv struct {
	client client.Client
	ns     string
}

func startOnNode(t *testing.T) *nodeEnv {
	t.Helper()
	c := clustertest.Require(t)
	c.RequireImages(t)
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		Paths: []string{crdDir}, ErrorIfPathMissing: true, MaxTime: testwait.Scaled(30 * time.Second),
	}); err != nil {
		t.Fatalf("install the CRD: %v", err)
	}
	ns := c.Namespace(t)
	cfg := testConfig(t, ns, map[string]string{
		"SORTIE_DISTRO_IMAGES":     "debian-bookworm=" + clustertest.DebianImage + ",ubuntu-noble=" + clustertest.DebianImage,
		"SORTIE_DEFAULT_DISTRO":    "debian-bookworm",
		"SORTIE_WORKSPACE_STORAGE": "64Mi",
	})
	// The node is shared with other tests and whatever runs on it: the
	// manager sees only the test's namespace, as the operator sees only its own.
	mgr := newManager(t, c.Config, cfg)
	r := &WorkspaceReconciler{Client: mgr.GetClient(), Scheme: testScheme, Config: cfg, Prober: AgentProber{},
		Recorder: mgr.GetEventRecorder("workspace-operator")}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cl, err := client.New(c.Config, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	return &nodeEnv{client: cl, ns: ns}
}

func (n *nodeEnv) get(t *testing.T, name string) *v1alpha1.Workspace {
	t.Helper()
	ws := &v1alpha1.Workspace{}
	if err := n.client.Get(context.Background(), client.ObjectKey{Namespace: n.ns, Name: name}, ws); err != nil {
		t.Fatal(err)
	}
	return ws
}

// waitPhase waits up to within (scaled) for the workspace's phase.
func (n *nodeEnv) waitPhase(t *testing.T, name string, want v1alpha1.Phase, within time.Duration) *v1alpha1.Workspace {
	t.Helper()
	start := time.Now()
	var ws *v1alpha1.Workspace
	testwait.Eventually(t, within, fmt.Sprintf("%s: phase %s", name, want), func() (bool, string) {
		ws = n.get(t, name)
		return ws.Status.Phase == want, fmt.Sprintf("phase %s (%s)", ws.Status.Phase, ws.Status.LastError)
	})
	t.Logf("%s: %s after %v", name, want, time.Since(start).Round(time.Millisecond))
	return ws
}

// agent returns a client for the workspace's agent, as the REST facade
// will use it.
func (n *nodeEnv) agent(t *testing.T, name string) *agentapi.Client {
	t.Helper()
	ctx := context.Background()
	ws := n.get(t, name)
	pod := &corev1.Pod{}
	if err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: ws.Status.PodName}, pod); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{}
	if err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: name + "-agent"}, sec); err != nil {
		t.Fatal(err)
	}
	return agentapi.NewClient(fmt.Sprintf("http://%s:7070", pod.Status.PodIP), string(sec.Data["token"]), nil)
}

func nodeWS(ns, name, script string) *v1alpha1.Workspace {
	return newWS(ns, name, func(s *v1alpha1.WorkspaceSpec) { s.InitScript = script })
}

// TestOnNode walks a workspace through its life on the real node: ready
// with the agent running the init script in Debian, exec, a failing init
// script, rebuild with another distro, suspend and resume, delete.
func TestOnNode(t *testing.T) {
	n := startOnNode(t)
	ctx := context.Background()

	if err := n.client.Create(ctx, nodeWS(n.ns, "real", "#!/bin/sh\nset -e\necho init ran > /workspace/marker\necho \"project is $PROJECT\"\n")); err != nil {
		t.Fatal(err)
	}
	ws := n.waitPhase(t, "real", v1alpha1.PhaseReady, 2*time.Minute)
	if ws.Status.Stages.Ready == nil {
		t.Error("no ready time recorded")
	}
	a := n.agent(t, "real")
	res, err := a.Exec(ctx, agentapi.ExecRequest{Command: "cat /workspace/marker; cat /etc/debian_version; echo $PROJECT; id -u"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "init ran\n12.") || !strings.Contains(res.Stdout, "\nreal\n0\n") {
		t.Errorf("exec in the workspace: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	initLog, err := a.InitLog(ctx, 0)
	if err != nil || !strings.Contains(string(initLog.Data), "project is real") {
		t.Errorf("init log = %q, %v", initLog.Data, err)
	}

	// A failing init script: error, with its exit code and its log.
	if err := n.client.Create(ctx, nodeWS(n.ns, "broken", "#!/bin/sh\necho about to fail\nexit 7\n")); err != nil {
		t.Fatal(err)
	}
	broken := n.waitPhase(t, "broken", v1alpha1.PhaseError, 2*time.Minute)
	if broken.Status.InitExitCode == nil || *broken.Status.InitExitCode != 7 {
		t.Errorf("init exit code = %v, want 7", broken.Status.InitExitCode)
	}
	if l, err := n.agent(t, "broken").InitLog(ctx, 0); err != nil || !strings.Contains(string(l.Data), "about to fail") {
		t.Errorf("failed init log = %q, %v", l.Data, err)
	}

	// Rebuild with another distro: a new Pod, the volume (and the marker) kept.
	first := n.get(t, "real").Status.PodName
	oldPod := &corev1.Pod{}
	_ = n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: first}, oldPod)
	ws = n.get(t, "real")
	ws.Spec.Distro = v1alpha1.DistroUbuntuNoble
	ws.Spec.Rebuild++
	if err := n.client.Update(ctx, ws); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new pod", 2*time.Minute, func() bool {
		p := &corev1.Pod{}
		err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: first}, p)
		return err == nil && p.UID != oldPod.UID
	})
	n.waitPhase(t, "real", v1alpha1.PhaseReady, 2*time.Minute)
	if res, err := n.agent(t, "real").Exec(ctx, agentapi.ExecRequest{Command: "cat /workspace/marker"}); err != nil || res.Stdout != "init ran\n" {
		t.Errorf("the volume did not survive the rebuild: %+v %v", res, err)
	}

	// Suspend keeps the volume; resume brings the workspace back.
	ws = n.get(t, "real")
	ws.Spec.Suspend = true
	if err := n.client.Update(ctx, ws); err != nil {
		t.Fatal(err)
	}
	n.waitPhase(t, "real", v1alpha1.PhaseStopped, time.Minute)
	waitUntil(t, "the pod gone", time.Minute, func() bool {
		err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: first}, &corev1.Pod{})
		return apierrors.IsNotFound(err)
	})
	ws = n.get(t, "real")
	ws.Spec.Suspend = false
	if err := n.client.Update(ctx, ws); err != nil {
		t.Fatal(err)
	}
	n.waitPhase(t, "real", v1alpha1.PhaseReady, 2*time.Minute)

	// Delete: the garbage collector removes the Pod, volume claim and Secret.
	if err := n.client.Delete(ctx, n.get(t, "real")); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.PersistentVolumeClaim{}, &corev1.Secret{}} {
		name := map[string]string{"*v1.Pod": "real-pod", "*v1.PersistentVolumeClaim": "real-data", "*v1.Secret": "real-agent"}[fmt.Sprintf("%T", obj)]
		waitUntil(t, name+" deleted", 2*time.Minute, func() bool {
			return apierrors.IsNotFound(n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: name}, obj))
		})
	}
}

// waitUntil waits up to within (scaled) for ok, and logs how long it took.
func waitUntil(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	start := time.Now()
	testwait.True(t, within, what, ok)
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}
