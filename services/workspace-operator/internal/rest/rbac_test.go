package rest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"sortie.dev/api"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/controller"
)

// TestLeastPrivilege runs the whole operator (controller, leader election,
// REST) as a user that holds only the generated rules, bound by a Role in
// its namespace, on an apiserver that enforces RBAC. Every verb the
// operator uses must be in config/rbac/role.yaml, and nothing outside its
// namespace is open to it.
func TestLeastPrivilege(t *testing.T) {
	// The package's apiserver will do: the user below is new, and it is
	// granted the Role in this test's namespace alone.
	k := kube.Get(t)
	ctx := context.Background()
	ns := k.Namespace(t)
	user := "sortie-operator-" + ns

	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &generated); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "sortie-workspace-operator", Namespace: ns}, Rules: generated.Rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sortie-workspace-operator", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := k.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	restricted := k.UserConfig(t, user)

	env := map[string]string{"SORTIE_WORKSPACE_NAMESPACE": ns, "SORTIE_AUTH_DEV_MODE": "true"}
	cfg, err := config.Load(nil, func(key string) (string, bool) { v, ok := env[key]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	s := testScheme
	mgr, err := ctrl.NewManager(restricted, ctrl.Options{
		Scheme: s, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller:              ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		LeaderElection:          true,
		LeaderElectionID:        "workspace-operator.sortie.dev",
		LeaderElectionNamespace: ns,
		Cache:                   cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controller.WorkspaceReconciler{Client: mgr.GetClient(), Scheme: s, Config: cfg,
		Prober: controller.AgentProber{}, Recorder: mgr.GetEventRecorder("workspace-operator")}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	log := logging.New(io.Discard, "workspace-operator", slog.LevelDebug)
	srv, err := server.New(server.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: ns, DefaultDistro: cfg.DefaultDistro, AgentPort: 7070, Log: log}
	if err := IndexWorkspaces(ctx, mgr.GetFieldIndexer()); err != nil {
		t.Fatal(err)
	}
	h.Register(srv.Engine, authn.NewAuthenticator(nil, true, log).Require())
	if err := mgr.Add(EnsureDefault{Client: mgr.GetClient(), Namespace: ns, Log: log}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	mgrErr := make(chan error, 1)
	mgrDone, srvDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(mgrDone); mgrErr <- mgr.Start(mctx) }()
	go func() { defer close(srvDone); _ = srv.Serve(mctx, ln) }()
	t.Cleanup(func() { cancel(); <-srvDone; <-mgrDone })

	e := &restEnv{t: t, url: "http://" + ln.Addr().String(), client: k.Client, ns: ns,
		http: openapitest.Load(t, api.OpenAPI).Client(t, &http.Client{Timeout: testwait.Scaled(time.Minute)})}
	var ws Workspace
	waitUntilREST(t, "the default workspace", func() bool {
		r := e.do("GET", "/api/workspaces/"+DefaultID, nil)
		return r.Status == 200
	})
	r2 := e.do("POST", "/api/workspaces", map[string]any{"name": "rbac", "workspace_type": "container", "env_vars": map[string]string{"A": "1"}})
	if r2.Status != 200 {
		t.Fatalf("create as the restricted operator: %d %s", r2.Status, r2.Body)
	}
	r2.Decode(t, &ws)
	// The controller (as the restricted user) makes the children and
	// writes status; Events are recorded.
	waitUntilREST(t, "the pod and status", func() bool {
		var pods corev1.PodList
		_ = k.Client.List(ctx, &pods, client.InNamespace(ns))
		var got Workspace
		e.do("GET", "/api/workspaces/"+ws.ID, nil).Decode(t, &got)
		// The workspace's Pod and the host runtime's (for the default
		// host workspace): both made as the restricted user.
		return len(pods.Items) == 2 && got.Status == "pending"
	})
	waitUntilREST(t, "events", func() bool {
		var evs corev1.EventList
		_ = k.Client.List(ctx, &evs, client.InNamespace(ns))
		return len(evs.Items) > 0
	})
	if r := e.do("PUT", "/api/workspaces/"+ws.ID, map[string]any{"name": "renamed"}); r.Status != 200 {
		t.Errorf("update: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/workspaces/"+ws.ID+"/build", map[string]any{"rebuild": true}); r.Status != 200 {
		t.Errorf("build: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/api/workspaces/"+ws.ID, nil); r.Status != 200 {
		t.Errorf("delete: %d %s", r.Status, r.Body)
	}
	select {
	case err := <-mgrErr:
		t.Fatalf("the restricted operator stopped: %v", err)
	default:
	}

	// Nothing outside its namespace.
	c, err := client.New(restricted, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace("kube-system")); !apierrors.IsForbidden(err) {
		t.Errorf("the operator listed pods in kube-system: %v, want Forbidden", err)
	}
	if err := c.List(ctx, &corev1.NamespaceList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the operator listed namespaces: %v, want Forbidden", err)
	}
}
