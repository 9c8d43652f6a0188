package rest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agent"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/controller"
)

// agentProcessEnv makes the test binary a workspace-agent (TestMain).
const agentProcessEnv = "SORTIE_REST_TEST_AGENT"

// runAgentProcess is the workspace-agent's main, configured from
// SORTIE_AGENT_* as in a Pod.
func runAgentProcess() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := agent.FromEnv(os.LookupEnv)
	if err != nil {
		log.Error("config", "err", err)
		return 1
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		log.Error("agent", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// agentWorkspace is a container workspace served by a real agent process
// on loopback: what the operator's REST layer sees of a ready workspace,
// without a node.
type agentWorkspace struct {
	id       string
	name     string
	stateDir string // the agent's state dir: init.log is here
	workdir  string
	agent    *agentapi.Client
}

// startAgentREST serves the API from the package's apiserver with every
// container workspace's agent on 127.0.0.1 at one free port; more adjusts
// the handler.
func startAgentREST(t testing.TB, more func(*Handler)) (*restEnv, int) {
	t.Helper()
	k := kube.Get(t)
	port := freePort(t)
	e := startREST(t, k.Config, k.Namespace(t), func(_ ctrl.Manager, h *Handler) {
		h.AgentPort = port
		if more != nil {
			more(h)
		}
	})
	return e, port
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// readyAgentWorkspace creates a container workspace over REST, starts its
// agent (env adds SORTIE_AGENT_* settings) and makes the workspace ready
// with a Pod at 127.0.0.1, as the controller would.
func readyAgentWorkspace(t testing.TB, e *restEnv, port int, name string, env map[string]string) *agentWorkspace {
	t.Helper()
	token := "agent-token-" + name
	aw := startAgentProcess(t, port, token, env)
	id, wsName := readyWorkspaceAt(t, e, name, "127.0.0.1", token)
	aw.id, aw.name = id, wsName
	return aw
}

// readyWorkspaceAt creates a container workspace over REST whose Pod is at
// ip, with the agent token token, and makes it ready; it returns its REST
// id and object name.
func readyWorkspaceAt(t testing.TB, e *restEnv, name, ip, token string) (string, string) {
	t.Helper()
	ctx := context.Background()
	r := e.do("POST", "/api/workspaces", map[string]any{"name": name, "workspace_type": "container"})
	if r.Status != 200 {
		t.Fatalf("create %s: %d %s", name, r.Status, r.Body)
	}
	var created Workspace
	r.Decode(t, &created)
	ws := objectOf(t, e, created.ID)

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: controller.AgentSecretName(ws, false), Namespace: e.ns},
		Data: map[string][]byte{"token": []byte(token)}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: controller.AgentPodName(ws, false), Namespace: e.ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "workspace", Image: "debian"}}}}
	for _, o := range []client.Object{sec, pod} {
		if err := e.client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod.Status.PodIP = ip
	if err := e.client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ws.Status.Phase, ws.Status.PodName = v1alpha1.PhaseReady, pod.Name
	if err := e.client.Status().Update(ctx, ws); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 30*time.Second, name+" ready over REST", func() (bool, string) {
		var got Workspace
		e.do("GET", "/api/workspaces/"+created.ID, nil).Decode(t, &got)
		return got.Status == "ready", got.Status
	})
	return created.ID, ws.Name
}

// objectOf is the Workspace with REST id id.
func objectOf(t testing.TB, e *restEnv, id string) *v1alpha1.Workspace {
	t.Helper()
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(context.Background(), &wl, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	for i := range wl.Items {
		if string(wl.Items[i].UID) == id {
			return &wl.Items[i]
		}
	}
	t.Fatalf("no Workspace with uid %s", id)
	return nil
}

// startAgentProcess runs this test binary as a workspace-agent on
// 127.0.0.1:port until the test ends.
func startAgentProcess(t testing.TB, port int, token string, env map[string]string) *agentWorkspace {
	t.Helper()
	root := t.TempDir()
	work := filepath.Join(root, "work")
	state := filepath.Join(work, ".sortie")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentProcessEnv+"=1",
		"SORTIE_AGENT_ADDR=127.0.0.1:"+strconv.Itoa(port), "SORTIE_AGENT_TOKEN="+token,
		"SORTIE_AGENT_WORKDIR="+work, "SORTIE_AGENT_STATE_DIR="+state, "SORTIE_AGENT_ROOTS="+root,
		"SORTIE_AGENT_GRACE=1s")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(testwait.Scaled(10 * time.Second)):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := agentapi.NewClient(url, token, &http.Client{})
	testwait.Eventually(t, 20*time.Second, "the agent process answering", func() (bool, string) {
		select {
		case <-exited:
			t.Fatal("the agent process exited")
		default:
		}
		err := c.Health(context.Background())
		return err == nil, fmt.Sprint(err)
	})
	return &agentWorkspace{stateDir: state, workdir: work, agent: c}
}
