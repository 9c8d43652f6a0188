package rest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// BenchmarkExecTrue compares three ways to run `true` in the same
// workspace Pod on the real node: the REST API (operator → agent), the
// agent alone, and client-go pods/exec through the API server and kubelet.
func BenchmarkExecTrue(b *testing.B) {
	e := startOnNode(b)
	var ws Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "bench", "workspace_type": "container", "distro": "debian-bookworm"}).Decode(b, &ws)
	waitStatusB(b, e, ws.ID, "ready")
	ctx := context.Background()
	obj := &v1alpha1.Workspace{}
	var wl v1alpha1.WorkspaceList
	_ = e.client.List(ctx, &wl, client.InNamespace(e.ns))
	for i := range wl.Items {
		if string(wl.Items[i].UID) == ws.ID {
			obj = &wl.Items[i]
		}
	}
	pod := &corev1.Pod{}
	sec := &corev1.Secret{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: obj.Status.PodName}, pod); err != nil {
		b.Fatal(err)
	}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: obj.Name + "-agent"}, sec); err != nil {
		b.Fatal(err)
	}

	b.Run("rest", func(b *testing.B) {
		for b.Loop() {
			if r := e.do("POST", "/api/workspaces/"+ws.ID+"/exec", map[string]any{"command": "true"}); r.Status != 200 {
				b.Fatalf("exec: %d %s", r.Status, r.Body)
			}
		}
	})
	b.Run("agent", func(b *testing.B) {
		a := agentapi.NewClient(fmt.Sprintf("http://%s:7070", pod.Status.PodIP), string(sec.Data["token"]), nil)
		for b.Loop() {
			if res, err := a.Exec(ctx, agentapi.ExecRequest{Command: "true"}); err != nil || res.ExitCode != 0 {
				b.Fatalf("exec: %v %+v", err, res)
			}
		}
	})
	b.Run("pods-exec", func(b *testing.B) {
		cs := kubernetes.NewForConfigOrDie(e.kube)
		for b.Loop() {
			req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(e.ns).Name(pod.Name).SubResource("exec").
				VersionedParams(&corev1.PodExecOptions{Container: "workspace", Command: []string{"true"}, Stdout: true, Stderr: true}, kscheme.ParameterCodec)
			ex, err := remotecommand.NewWebSocketExecutor(e.kube, "GET", req.URL().String())
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer
			if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &out}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWorkspacesReady creates SORTIE_BENCH_WORKSPACES (default 100)
// container workspaces at once on the real node and waits until all are
// ready. It reports the wall time for all of them and the per-workspace
// create → ready percentiles from the workspaces' own stage times.
func BenchmarkWorkspacesReady(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("SORTIE_BENCH_WORKSPACES")); err == nil && v > 0 {
		n = v
	}
	e := startOnNode(b)
	ctx := context.Background()
	for b.Loop() {
		start := time.Now()
		ids := make([]string, n)
		for i := range n {
			var ws Workspace
			r := e.do("POST", "/api/workspaces", map[string]any{"name": fmt.Sprintf("w%03d", i), "workspace_type": "container", "distro": "debian-bookworm"})
			if r.Status != 200 {
				b.Fatalf("create %d: %d %s", i, r.Status, r.Body)
			}
			r.Decode(b, &ws)
			ids[i] = ws.ID
		}
		for _, id := range ids {
			waitStatusB(b, e, id, "ready")
		}
		all := time.Since(start)
		var each []float64
		var wl v1alpha1.WorkspaceList
		_ = e.client.List(ctx, &wl, client.InNamespace(e.ns))
		for _, w := range wl.Items {
			if w.Status.Stages.Ready != nil {
				each = append(each, w.Status.Stages.Ready.Sub(w.CreationTimestamp.Time).Seconds())
			}
		}
		sort.Float64s(each)
		b.ReportMetric(all.Seconds(), "s-all-ready")
		if len(each) > 0 {
			b.ReportMetric(each[len(each)/2], "s-p50-each")
			b.ReportMetric(each[len(each)*9/10], "s-p90-each")
		}
		b.StopTimer()
		for _, id := range ids {
			e.do("DELETE", "/api/workspaces/"+id, nil)
		}
		b.StartTimer()
	}
}

// waitStatusB waits up to 15 minutes (scaled) for the workspace's status,
// failing at once on an error.
func waitStatusB(b *testing.B, e *restEnv, id, want string) {
	b.Helper()
	testwait.Eventually(b, 15*time.Minute, "workspace "+id+" "+want, func() (bool, string) {
		var ws Workspace
		e.do("GET", "/api/workspaces/"+id, nil).Decode(b, &ws)
		if ws.Status == "error" {
			b.Fatalf("workspace %s failed: %s", id, ptrString(ws.ErrorMessage))
		}
		return ws.Status == want, ws.Status
	})
}

func ptrString(s *string) string {
	if s == nil {
		return "(no message)"
	}
	return *s
}
