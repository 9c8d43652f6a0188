package chart

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testwait"
)

// TestHelmInstall installs the chart for real on the local node with the
// images make test packs from this tree (hack/images.sh), waits for every Deployment
// to be Available, logs in and runs a command in the default host
// workspace through the installed services, upgrades the release with a
// changed value (the generated Secrets must survive), and uninstalls it.
//
// The Workspace CRD is shared by every test on the node, so this release
// does not own it (crds.enabled=false); TestDryRunOnCluster checks the
// chart's CRD object against the apiserver.
func TestHelmInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("a real install takes minutes")
	}
	cl := clustertest.Require(t)
	cl.RequireImages(t, "workspace-agent", "auth", "mission-control", "workspace-operator", "library", "redis")
	ctx := testwait.Context(t, 15*time.Minute)
	ensureCRD(t, newApplier(t, cl.Config))
	ns := cl.Namespace(t)
	c := loadChart(t)
	cfg := helmConfig(t, cl.Kubeconfig, ns)
	kube := kubernetes.NewForConfigOrDie(cl.Config)

	// The chart makes the workspace namespace (Pod Security labels and
	// all) and keeps it on uninstall: the test names it and deletes it.
	wsns := ns + "-ws"
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), wsns, metav1.DeleteOptions{})
	})
	values := withWorkspaceNamespace(localNodeValues(), wsns)
	values["crds"] = map[string]any{"enabled": false}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = "sortie", ns
	install.Wait, install.Timeout = true, testwait.Scaled(8*time.Minute)
	start := time.Now()
	rel, err := install.Run(c, values)
	if err != nil {
		dumpPods(t, kube, ns)
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("helm install: %s in %v", rel.Info.Status, time.Since(start).Round(time.Second))
	checkAvailable(t, kube, ns)
	wsNamespace, err := kube.CoreV1().Namespaces().Get(ctx, wsns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"enforce", "warn", "audit"} {
		if got := wsNamespace.Labels["pod-security.kubernetes.io/"+mode]; got != "baseline" {
			t.Errorf("the workspace namespace's Pod Security %s = %q, want baseline", mode, got)
		}
	}

	secretsBefore := secretData(t, kube, ns)
	journey(t, kube, ns)
	// The host runtime runs in the workspace namespace, which enforces
	// baseline: it was admitted.
	if pods, err := kube.CoreV1().Pods(wsns).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) == 0 {
		t.Errorf("no workspace Pod in %s: %v", wsns, err)
	}

	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Wait, upgrade.Timeout = ns, true, testwait.Scaled(5*time.Minute)
	values["auth"] = map[string]any{"replicas": 1}
	values["logLevel"] = "debug"
	start = time.Now()
	if _, err := upgrade.Run("sortie", c, values); err != nil {
		dumpPods(t, kube, ns)
		t.Fatalf("helm upgrade: %v", err)
	}
	t.Logf("helm upgrade in %v", time.Since(start).Round(time.Second))
	dep, err := kube.AppsV1().Deployments(ns).Get(ctx, "sortie-auth", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("auth replicas after upgrade: %d, want 1", *dep.Spec.Replicas)
	}
	checkAvailable(t, kube, ns)
	for name, data := range secretData(t, kube, ns) {
		if before, ok := secretsBefore[name]; !ok || before != data {
			t.Errorf("Secret %s changed on upgrade", name)
		}
	}
	journey(t, kube, ns)

	uninstall := action.NewUninstall(cfg)
	uninstall.Wait, uninstall.Timeout = true, testwait.Scaled(3*time.Minute)
	res, err := uninstall.Run("sortie")
	if err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	t.Logf("helm uninstall kept: %s", strings.TrimSpace(res.Info))
	deps, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 0 {
		t.Errorf("%d Deployments left after uninstall", len(deps.Items))
	}
	if _, err := kube.CoreV1().Secrets(ns).Get(ctx, "sortie-admin", metav1.GetOptions{}); err != nil {
		t.Errorf("the admin password Secret was not kept: %v", err)
	}
}

func helmConfig(t *testing.T, kubeconfig, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &ns
	cfg := new(action.Configuration)
	logf := func(format string, v ...any) { t.Logf("helm: "+format, v...) }
	if err := cfg.Init(flags, ns, "secret", logf); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func checkAvailable(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	deps, err := kube.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 4 {
		t.Errorf("%d Deployments, want 4", len(deps.Items))
	}
	for _, d := range deps.Items {
		if !available(&d) {
			t.Errorf("Deployment %s is not Available: %+v", d.Name, d.Status.Conditions)
		}
	}
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// secretData is every Secret of the release, as its data printed.
func secretData(t *testing.T, kube kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	list, err := kube.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=sortie"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Name] = fmt.Sprint(s.Data)
	}
	return out
}

// serviceURL is a Service's ClusterIP address; kube-proxy routes it from
// this machine too.
func serviceURL(t *testing.T, kube kubernetes.Interface, ns, name string) string {
	t.Helper()
	svc, err := kube.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
}

// journey logs in as the admin (password from the generated Secret) and
// runs a command in the default host workspace, through the installed
// services: auth signs, the operator verifies against auth's keys.
func journey(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	secret, err := kube.CoreV1().Secrets(ns).Get(ctx, "sortie-admin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api := &apiClient{t: t, http: &http.Client{Timeout: time.Minute}}
	// Right after a rollout, kube-proxy may still send a connection to a
	// Pod that is going away: retry until the Service answers.
	var login struct{ Token string }
	auth := serviceURL(t, kube, ns, "sortie-auth")
	testwait.True(t, time.Minute, "a login", func() bool {
		return api.try("POST", auth+"/api/auth/login", map[string]any{"password": string(secret.Data["password"])}, &login) == 200
	})
	api.token = login.Token
	mc := serviceURL(t, kube, ns, "sortie-mission-control")
	testwait.True(t, time.Minute, "mission-control's /api/health", func() bool {
		return api.try("GET", mc+"/api/health", nil, nil) == 200
	})

	ops := serviceURL(t, kube, ns, "sortie-workspace-operator")
	const hostID = "00000000-0000-0000-0000-000000000000"
	testwait.True(t, 3*time.Minute, "the host workspace ready", func() bool {
		var ws struct{ Status string }
		return api.try("GET", ops+"/api/workspaces/"+hostID, nil, &ws) == 200 && ws.Status == "ready"
	})
	var out struct {
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
	}
	api.call("POST", ops+"/api/workspaces/"+hostID+"/exec", map[string]any{"command": "echo installed; id -u"}, 200, &out)
	if out.ExitCode != 0 || !strings.HasPrefix(out.Stdout, "installed\n") {
		t.Errorf("exec through the installed operator: %+v", out)
	}
	// Without a token the API refuses.
	api.token = ""
	if got := api.try("GET", ops+"/api/workspaces", nil, nil); got != 401 {
		t.Errorf("GET /api/workspaces without a token: %d, want 401", got)
	}
}

func dumpPods(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	pods, err := kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s: %s %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		for _, ctr := range p.Spec.Containers {
			raw, err := kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: ctr.Name, TailLines: ptrTo(int64(20))}).Do(context.Background()).Raw()
			if err == nil {
				t.Logf("  %s log:\n%s", ctr.Name, raw)
			}
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
