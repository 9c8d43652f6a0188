package controller

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
)

// requestLog records every request the clients of a config send to the
// apiserver.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "GET /api/v1/...?query"
}

// wrap is a rest.Config's WrapTransport: every transport made from the
// config logs here.
func (l *requestLog) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.RequestURI())
		l.mu.Unlock()
		return next.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs...)
}

// TestOperatorReadsOnlyItsSecrets runs the controller as a user holding
// only the generated rules, bound by a Role in the workspace namespace, as
// the chart installs it, beside a control-plane namespace with Secrets of
// its own. The operator's requests are recorded on the wire: it never
// touches the control-plane namespace, never lists or watches Secrets but
// its own labelled ones, and a Secret planted unlabelled in its namespace
// is not in its cache; its Role refuses it the control plane's Secrets.
func TestOperatorReadsOnlyItsSecrets(t *testing.T) {
	k := kube.Get(t)
	ctx := context.Background()
	ns, controlPlane := k.Namespace(t), k.Namespace(t)
	user := "sortie-operator-" + ns
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "sortie-auth-keys", Namespace: controlPlane}, StringData: map[string]string{"key.pem": "signing key"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "planted", Namespace: ns}, StringData: map[string]string{"x": "not the operator's"}},
		// A workspace's env Secret, labelled as the REST API makes it.
		{ObjectMeta: metav1.ObjectMeta{Name: "envd-env", Namespace: ns, Labels: map[string]string{LabelWorkspace: "envd"}},
			StringData: map[string]string{"TOKEN": "secret value"}},
	} {
		if err := k.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	restricted := k.RoleUserConfig(t, ns, user, filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	probe := rest.CopyConfig(restricted) // the test's own calls as that user, not logged
	wire := &requestLog{}
	restricted.Wrap(wire.wrap)

	cfg := testConfig(t, ns, localImages)
	mgr := newManager(t, restricted, cfg)
	r := &WorkspaceReconciler{Client: mgr.GetClient(), Scheme: testScheme, Config: cfg,
		Prober: &agentAnswers{}, Recorder: mgr.GetEventRecorder("workspace-operator")}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	e := &env{client: k.Client, ns: ns}
	create(t, e, newWS(ns, "plain"))
	create(t, e, newWS(ns, "envd", func(s *v1alpha1.WorkspaceSpec) { s.EnvSecretRef = "envd-env" }))
	create(t, e, &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "hosted", Namespace: ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "hosted", Path: "/workspaces/hosted"}})
	// Each Pod is made only once its Secrets are read: the agent token's
	// (made by the operator) and, for envd, the env Secret.
	for _, pod := range []string{"plain-pod", "envd-pod", HostRuntimeName + "-pod"} {
		eventually(t, pod, podExists(e, pod))
	}

	var planted corev1.Secret
	if err := mgr.GetClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: "planted"}, &planted); !apierrors.IsNotFound(err) {
		t.Errorf("the operator's client read an unlabelled Secret: %v (%v), want not found", err, planted.Data)
	}
	op, err := client.New(probe, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []client.ObjectKey{{Namespace: controlPlane, Name: "sortie-auth-keys"}} {
		if err := op.Get(ctx, key, &corev1.Secret{}); !apierrors.IsForbidden(err) {
			t.Errorf("the operator's Role let it read %s: %v, want Forbidden", key, err)
		}
	}
	var secretCalls int
	for _, req := range wire.all() {
		if strings.Contains(req, "/namespaces/"+controlPlane+"/") {
			t.Errorf("the operator called into the control-plane namespace: %s", req)
		}
		if !strings.Contains(req, "/secrets") {
			continue
		}
		secretCalls++
		method, uri, _ := strings.Cut(req, " ")
		path, query, _ := strings.Cut(uri, "?")
		switch {
		case strings.Contains(path, "/planted"), !strings.HasPrefix(path, "/api/v1/namespaces/"+ns+"/secrets"):
			t.Errorf("the operator asked for a Secret not its own: %s", req)
		case method == http.MethodGet && strings.HasSuffix(path, "/secrets"):
			// A list or a watch: of its own labelled Secrets only.
			if !strings.Contains(query, "labelSelector=sortie.dev%2Fworkspace") {
				t.Errorf("the operator listed or watched Secrets without its label selector: %s", req)
			}
		case method == http.MethodGet:
			t.Errorf("the operator read a Secret past its cache: %s", req)
		}
	}
	if secretCalls == 0 {
		t.Error("no Secret request was recorded: the recorder saw nothing")
	}
}
