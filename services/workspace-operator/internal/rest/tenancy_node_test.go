package rest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/controller"
	"sortie.dev/services/workspace-operator/internal/library"
)

// execOK runs a command over REST and returns its answer.
func execOK(t *testing.T, e *restEnv, id, command string) ExecResponse {
	t.Helper()
	r := e.do("POST", "/api/workspaces/"+id+"/exec", map[string]any{"command": command})
	if r.Status != 200 {
		t.Fatalf("exec %q: %d %s", command, r.Status, r.Body)
	}
	var out ExecResponse
	r.Decode(t, &out)
	return out
}

// Commands that look for alice's things from inside a runtime: her
// process (by its arguments, as ps shows them, and through /proc), the
// secret in its environment, and her file anywhere on the filesystem.
const (
	psAll      = "ps -eo args"
	procArgs   = `for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done`
	procEnv    = `cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -c '^ALICE_KEY=' || true`
	findFile   = `find / -path /proc -prune -o -name 'alice-notes*' -print 2>/dev/null | sed 's/^/fo''und:/'` // fo''und: so the command line itself does not say found:
	aliceSleep = "sleep 3011"
)

// TestTenancyOnNode proves on the real node that in multi-user mode two
// users' default workspaces live in runtimes of their own: a process alice
// starts (with a secret in its environment) and a file she writes are
// visible from her own default workspace and from nowhere in bob's (ps,
// /proc/*/cmdline, /proc/*/environ, find /). A host workspace made with
// kubectl that names an env Secret gets its values in every command.
func TestTenancyOnNode(t *testing.T) {
	c, ns := prepareNode(t)
	e := serveOnNodeIn(t, c, ns, nil, true)
	ctx := context.Background()
	asAlice, asBob := e.as(alice), e.as(bob)
	waitStatus(t, asAlice, DefaultID, "ready")
	waitStatus(t, asBob, DefaultID, "ready")

	a, b := defaultOf(t, asAlice), defaultOf(t, asBob)
	if a.Status.PodName != controller.HostRuntimeName+"-alice-pod" || b.Status.PodName != controller.HostRuntimeName+"-bob-pod" {
		t.Fatalf("runtimes: alice in %s, bob in %s", a.Status.PodName, b.Status.PodName)
	}
	var pods corev1.PodList
	if err := e.client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{controller.LabelComponent: controller.ComponentHostRuntime}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 {
		t.Errorf("%d runtime pods, want alice's and bob's (no shared one in multi-user mode)", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.HostPID || p.Spec.ShareProcessNamespace != nil && *p.Spec.ShareProcessNamespace {
			t.Errorf("runtime pod %s shares a process namespace", p.Name)
		}
	}

	// alice: a long process with a secret in its environment, and a file.
	r := asAlice.do("POST", "/api/workspaces/"+DefaultID+"/processes", map[string]any{
		"id": "turn", "argv": strings.Fields(aliceSleep), "env": map[string]string{"ALICE_KEY": "alice-provider-key"}})
	if r.Status != 201 {
		t.Fatalf("alice starts a process: %d %s", r.Status, r.Body)
	}
	execOK(t, asAlice, DefaultID, "echo alice-private > /workspaces/alice-notes.txt")

	// From her own workspace all of it is there: the checks can see.
	own := execOK(t, asAlice, DefaultID, psAll+"; "+procArgs+"; echo env=$("+procEnv+"); "+findFile)
	if strings.Count(own.Stdout, aliceSleep) < 2 || strings.Contains(own.Stdout, "env=0") || !strings.Contains(own.Stdout, "found:/workspaces/alice-notes.txt") {
		t.Fatalf("alice does not see her own process, secret and file, so the checks prove nothing:\n%s", own.Stdout)
	}
	// From bob's default workspace none of it is.
	bobs := execOK(t, asBob, DefaultID, psAll+"; "+procArgs+"; echo env=$("+procEnv+"); "+findFile+"; cat /workspaces/alice-notes.txt 2>&1")
	if strings.Contains(bobs.Stdout, aliceSleep) || !strings.Contains(bobs.Stdout, "env=0") || strings.Contains(bobs.Stdout, "alice-private") ||
		strings.Contains(bobs.Stdout, "found:") {
		t.Errorf("bob's workspace sees alice's process, environment or file:\n%s", bobs.Stdout)
	}
	t.Logf("bob's runtime sees:\n%s", bobs.Stdout)
	// Nor through bob's other host workspaces, nor her process by its id.
	other := mustCreate(t, asBob, map[string]any{"name": "bob project"})
	waitStatus(t, asBob, other.ID, "ready")
	if out := execOK(t, asBob, other.ID, procArgs+"; echo env=$("+procEnv+")"); strings.Contains(out.Stdout, aliceSleep) || !strings.Contains(out.Stdout, "env=0") {
		t.Errorf("bob's second host workspace sees alice's process:\n%s", out.Stdout)
	}
	if r := asBob.do("GET", "/api/workspaces/"+DefaultID+"/processes/turn", nil); r.Status != 404 {
		t.Errorf("bob reads alice's process id in his own workspace: %d %s", r.Status, r.Body)
	}
	if r := asBob.do("GET", "/api/workspaces/"+string(a.UID)+"/processes/turn/output", nil); r.Status != 404 {
		t.Errorf("bob reads alice's output: %d %s", r.Status, r.Body)
	}
	if r := asAlice.do("POST", "/api/workspaces/"+DefaultID+"/processes/turn/signal", map[string]any{"signal": "KILL"}); r.Status != 204 {
		t.Errorf("alice kills her process: %d %s", r.Status, r.Body)
	}

	// A host workspace made with kubectl for alice, with an env Secret:
	// every command gets the values, the Workspace object never holds them.
	ws := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "alice-kube", Namespace: ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "kube", Path: "/workspaces/kube", Owner: "alice", EnvSecretRef: "alice-kube-env",
			EnvVars: map[string]string{"PLAIN": "p"}}}
	if err := e.client.Create(ctx, ws); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-kube-env", Namespace: ns}, StringData: map[string]string{"HOST_SECRET": "hs-1", "PLAIN": "loses"}}
	if err := e.client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventuallyListed(t, asAlice, string(ws.UID))
	waitStatus(t, asAlice, string(ws.UID), "ready")
	if out := execOK(t, asAlice, string(ws.UID), "echo $HOST_SECRET $PLAIN; pwd"); out.Stdout != "hs-1 p\n/workspaces/kube\n" {
		t.Errorf("a host workspace's secret env: %q", out.Stdout)
	}
	var got Workspace
	asAlice.do("GET", "/api/workspaces/"+string(ws.UID), nil).Decode(t, &got)
	if strings.Join(got.SecretEnvVars, ",") != "HOST_SECRET,PLAIN" {
		t.Errorf("secret_env_vars = %v", got.SecretEnvVars)
	}
}

// fakeLibrary serves one workspace template with a sealed value, as the
// library answers the operator's service token: the value opened, its key
// in encrypted_keys; and an empty bundle.
func fakeLibrary(t *testing.T) *library.Client {
	t.Helper()
	var empty bytes.Buffer
	_ = tar.NewWriter(&empty).Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/library/workspace-template/secrets", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"name": "secrets", "distro": "debian-bookworm", "skills": []string{}, "init_scripts": []string{},
			"env_vars":       map[string]string{"API_TOKEN": "tok-9f8e7d", "OTHER_SECRET": "kept-from-template", "PLAIN": "visible"},
			"encrypted_keys": []string{"API_TOKEN", "OTHER_SECRET"},
		})
	})
	mux.HandleFunc("GET /api/library/bundle", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Library-Revision", "r1")
		_, _ = w.Write(empty.Bytes())
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &library.Client{BaseURL: srv.URL, HTTP: &http.Client{Timeout: testwait.Scaled(time.Minute)}}
}

// TestTemplateSecretsOnNode: a template's sealed env vars reach the
// container's processes through the workspace's own Secret (envFrom), and
// are in no REST answer, not the Workspace object and not the Pod spec.
func TestTemplateSecretsOnNode(t *testing.T) {
	c, ns := prepareNode(t)
	e := serveOnNodeIn(t, c, ns, fakeLibrary(t), true)
	ctx := context.Background()
	asAlice := e.as(alice)
	r := asAlice.do("POST", "/api/workspaces", map[string]any{"name": "with secrets", "template": "secrets",
		"env_vars": map[string]string{"OTHER_SECRET": "the-request-s-own"}})
	if r.Status != 200 {
		t.Fatalf("create from the template: %d %s", r.Status, r.Body)
	}
	var ws Workspace
	r.Decode(t, &ws)
	secrets := []string{"tok-9f8e7d", "kept-from-template"}
	noSecret := func(what string, b []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the secret %q:\n%s", what, s, b)
			}
		}
	}
	noSecret("the create answer", r.Body)
	if strings.Join(ws.SecretEnvVars, ",") != "API_TOKEN" || ws.EnvVars["PLAIN"] != "visible" || ws.EnvVars["OTHER_SECRET"] != "the-request-s-own" {
		t.Errorf("answer: env %v, secret names %v", ws.EnvVars, ws.SecretEnvVars)
	}
	waitStatus(t, asAlice, ws.ID, "ready")
	if out := execOK(t, asAlice, ws.ID, "echo $API_TOKEN $PLAIN $OTHER_SECRET"); out.Stdout != "tok-9f8e7d visible the-request-s-own\n" {
		t.Errorf("the workspace's environment: %q", out.Stdout)
	}
	for _, p := range []string{"/api/workspaces/" + ws.ID, "/api/workspaces", "/api/workspaces/" + ws.ID + "/debug"} {
		noSecret("GET "+p, asAlice.do("GET", p, nil).Body)
	}

	var obj v1alpha1.Workspace
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(ctx, &wl, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, w := range wl.Items {
		if string(w.UID) == ws.ID {
			obj = w
		}
	}
	y, _ := yaml.Marshal(obj)
	noSecret("the Workspace object (kubectl get ws -o yaml)", y)
	if obj.Spec.EnvSecretRef != obj.Name+"-env" {
		t.Errorf("spec.envSecretRef = %q", obj.Spec.EnvSecretRef)
	}
	pod := &corev1.Pod{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.Status.PodName}, pod); err != nil {
		t.Fatal(err)
	}
	y, _ = yaml.Marshal(pod.Spec)
	noSecret("the Pod spec", y)
	sec := &corev1.Secret{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.Spec.EnvSecretRef}, sec); err != nil {
		t.Fatal(err)
	}
	if owner := metav1.GetControllerOf(sec); owner == nil || owner.UID != obj.UID || string(sec.Data["API_TOKEN"]) != "tok-9f8e7d" || len(sec.Data) != 1 {
		t.Errorf("env secret: owner %v, keys %d", owner, len(sec.Data))
	}
}
