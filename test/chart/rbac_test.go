package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
)

// TestChartRBAC runs the real workspace-operator and library binaries on
// this machine against the real node, each as the chart's ServiceAccount
// (impersonated) holding only the chart's Roles, and walks the workspace
// journey: the default host workspace and a container workspace become
// ready, exec works in both, the library publishes its revision and the
// operator syncs its skills into the host workspace. Then it proves that
// verbs the Roles leave out are refused.
func TestChartRBAC(t *testing.T) {
	cl := clustertest.Require(t)
	// The release's namespace (the control plane: its ServiceAccounts and
	// Secrets) and the workspaces', as the chart installs them by default.
	ns, wsns := cl.Namespace(t), cl.Namespace(t)
	c := loadChart(t)
	a := newApplier(t, cl.Config)
	ensureCRD(t, a)

	r, err := Render(c, "sortie", ns, withWorkspaceNamespace(localNodeValues(), wsns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(5*time.Minute))
	defer cancel()
	for _, o := range r.Objects {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding":
			if err := a.apply(ctx, o, false); err != nil {
				t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	dir := t.TempDir()
	operatorCfg := asServiceAccount(cl.Config, ns, "sortie-workspace-operator")
	libraryCfg := asServiceAccount(cl.Config, ns, "sortie-library")

	// A Secret of the control plane's, which the operator must never read.
	kube := kubernetes.NewForConfigOrDie(cl.Config)
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sortie-auth-keys"},
		StringData: map[string]string{"signing-key.pem": "not for workspaces"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	libURL := startProcess(t, testbin.Path(t, "library"), map[string]string{
		"SORTIE_AUTH_DEV_MODE":               "true",
		"SORTIE_LIBRARY_DATA_DIR":            filepath.Join(dir, "library"),
		"SORTIE_LIBRARY_KUBECONFIG":          writeKubeconfig(t, cl.Kubeconfig, ns, "sortie-library"),
		"SORTIE_LIBRARY_CONFIGMAP_NAMESPACE": wsns,
	})
	env := containerEnv(t, r, "sortie-workspace-operator")
	opURL := startProcess(t, testbin.Path(t, "workspace-operator"), map[string]string{
		"KUBECONFIG":                 writeKubeconfig(t, cl.Kubeconfig, ns, "sortie-workspace-operator"),
		"SORTIE_AUTH_DEV_MODE":       "true",
		"SORTIE_METRICS_ADDR":        "0",
		"SORTIE_PROBE_ADDR":          "0",
		"SORTIE_WORKSPACE_NAMESPACE": wsns,
		"SORTIE_LIBRARY_URL":         libURL,
		"SORTIE_AGENT_IMAGE":         env["SORTIE_AGENT_IMAGE"],
		"SORTIE_DISTRO_IMAGES":       env["SORTIE_DISTRO_IMAGES"],
		"SORTIE_DEFAULT_DISTRO":      env["SORTIE_DEFAULT_DISTRO"],
		"SORTIE_WORKSPACE_STORAGE":   env["SORTIE_WORKSPACE_STORAGE"],
		"SORTIE_HOST_STORAGE":        env["SORTIE_HOST_STORAGE"],
		// The chart's workload settings, as the Deployment passes them.
		"SORTIE_WORKSPACE_REQUESTS":      env["SORTIE_WORKSPACE_REQUESTS"],
		"SORTIE_WORKSPACE_LIMITS":        env["SORTIE_WORKSPACE_LIMITS"],
		"SORTIE_WORKSPACE_MAX_RESOURCES": env["SORTIE_WORKSPACE_MAX_RESOURCES"],
		"SORTIE_WORKSPACE_CAPABILITIES":  env["SORTIE_WORKSPACE_CAPABILITIES"],
	})

	api := &apiClient{t: t, http: &http.Client{Timeout: 2 * time.Minute}}
	const hostID = "00000000-0000-0000-0000-000000000000"
	var created struct{ ID, Status string }
	api.call("POST", opURL+"/api/workspaces", map[string]any{"name": "rbac-journey", "workspace_type": "container"}, 200, &created)
	for _, id := range []string{hostID, created.ID} {
		testwait.True(t, 3*time.Minute, "workspace "+id+" ready", func() bool {
			var ws struct{ Status string }
			return api.try("GET", opURL+"/api/workspaces/"+id, nil, &ws) == 200 && ws.Status == "ready"
		})
		var out struct {
			ExitCode int    `json:"exit_code"`
			Stdout   string `json:"stdout"`
		}
		api.call("POST", opURL+"/api/workspaces/"+id+"/exec", map[string]any{"command": "echo hello from $(hostname)"}, 200, &out)
		if out.ExitCode != 0 || !strings.HasPrefix(out.Stdout, "hello from ") {
			t.Errorf("exec in %s: %+v", id, out)
		}
	}

	// The workspace Pods run in the workspace namespace, hardened.
	pods, err := kube.CoreV1().Pods(wsns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods in the workspace namespace: %v %d, want the workspace's and the host runtime's", err, len(pods.Items))
	}
	for _, p := range pods.Items {
		sc := p.Spec.Containers[0].SecurityContext
		if p.Spec.SecurityContext == nil || p.Spec.SecurityContext.SeccompProfile == nil || sc == nil || sc.AllowPrivilegeEscalation == nil ||
			*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || p.Spec.Containers[0].Resources.Limits.Memory().IsZero() {
			t.Errorf("pod %s is not hardened: %+v %+v", p.Name, p.Spec.SecurityContext, sc)
		}
	}

	// The library publishes through its Role: create at start, update on a save.
	revision := func() string {
		cm, err := kube.CoreV1().ConfigMaps(wsns).Get(ctx, "sortie-library-revision", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["revision"]
	}
	testwait.True(t, 2*time.Minute, "the library's revision ConfigMap", func() bool { return revision() != "" })
	first := revision()
	api.call("PUT", libURL+"/api/library/command/chart-rbac", map[string]any{"content": "Made by the chart's RBAC test."}, 200, nil)
	testwait.True(t, time.Minute, "the revision ConfigMap updated", func() bool { return revision() != first })
	// The operator reads the ConfigMap and syncs the library into the
	// default host workspace (every starter skill).
	testwait.True(t, 2*time.Minute, "skills synced into the host workspace", func() bool {
		var out struct {
			ExitCode int    `json:"exit_code"`
			Stdout   string `json:"stdout"`
		}
		return api.try("POST", opURL+"/api/workspaces/"+hostID+"/exec", map[string]any{"command": "ls .claude/skills"}, &out) == 200 &&
			out.ExitCode == 0 && strings.TrimSpace(out.Stdout) != ""
	})

	// What the Roles leave out is refused.
	op := kubernetes.NewForConfigOrDie(operatorCfg)
	lib := kubernetes.NewForConfigOrDie(libraryCfg)
	forbidden := map[string]func() error{
		"operator deletes a workspace volume": func() error {
			return op.CoreV1().PersistentVolumeClaims(wsns).Delete(ctx, "sortie-host-runtime-data", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		},
		"operator reads a control-plane Secret": func() error {
			_, err := op.CoreV1().Secrets(ns).Get(ctx, "sortie-auth-keys", metav1.GetOptions{})
			return err
		},
		"operator lists the control plane's Secrets": func() error {
			_, err := op.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"operator lists Secrets cluster-wide": func() error {
			_, err := op.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"operator lists Secrets in kube-system": func() error {
			_, err := op.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		"operator lists Pods cluster-wide": func() error {
			_, err := op.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		},
		"operator execs into a Pod": func() error {
			return op.CoreV1().RESTClient().Post().Namespace(wsns).Resource("pods").Name("sortie-host-runtime-pod").SubResource("exec").Do(ctx).Error()
		},
		"library reads another ConfigMap": func() error {
			_, err := lib.CoreV1().ConfigMaps(wsns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		},
		"library lists ConfigMaps": func() error {
			_, err := lib.CoreV1().ConfigMaps(wsns).List(ctx, metav1.ListOptions{})
			return err
		},
		"library deletes its ConfigMap": func() error {
			return lib.CoreV1().ConfigMaps(wsns).Delete(ctx, "sortie-library-revision", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		},
		"library reads Secrets": func() error {
			_, err := lib.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
	}
	for name, call := range forbidden {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", name, err)
		}
	}
}

// asServiceAccount is cfg acting as a ServiceAccount (impersonation), so
// only the RBAC rules bound to it apply.
func asServiceAccount(cfg *rest.Config, ns, name string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", ns, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return c
}

// writeKubeconfig writes a copy of the admin kubeconfig that impersonates
// the ServiceAccount, for a process started by the test.
func writeKubeconfig(t *testing.T, admin, ns, name string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = fmt.Sprintf("system:serviceaccount:%s:%s", ns, name)
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProcess runs a service on a free loopback port until the test ends
// and returns its URL once /readyz answers. Its log is shown on failure.
func startProcess(t *testing.T, path string, env map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "SORTIE_LISTEN_ADDR="+addr)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-testwait.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(path), tail(log.String(), 4000))
		}
	})
	url := "http://" + addr
	testwait.True(t, time.Minute, filepath.Base(path)+" ready", func() bool {
		select {
		case <-done:
			t.Fatalf("%s exited:\n%s", filepath.Base(path), log.String())
		default:
		}
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return url
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// apiClient calls Sortie's JSON APIs.
type apiClient struct {
	t     *testing.T
	http  *http.Client
	token string
}

// try makes one call and decodes a 2xx answer into out; it returns the
// status (0 when the call failed).
func (c *apiClient) try(method, url string, body, out any) int {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode
}

// call is try that fails the test unless the status is want.
func (c *apiClient) call(method, url string, body any, want int, out any) {
	c.t.Helper()
	if got := c.try(method, url, body, out); got != want {
		c.t.Fatalf("%s %s: status %d, want %d", method, url, got, want)
	}
}
