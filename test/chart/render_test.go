package chart

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"sortie.dev/api"
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

func render(t *testing.T, c *chart.Chart, namespace string, values map[string]any) *Rendered {
	t.Helper()
	r, err := Render(c, "sortie", namespace, values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out); err != nil {
		t.Fatalf("convert %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &out
}

// TestRenderHardening renders every value set and holds every workload to
// the chart's promises: non-root, read-only root, no capabilities, seccomp,
// probes and resources on every container, standard labels on every object.
func TestRenderHardening(t *testing.T) {
	c := loadChart(t)
	for name, set := range valueSets("sortie-ws") {
		t.Run(name, func(t *testing.T) {
			r := render(t, c, "sortie", set.values)
			if len(r.Objects) == 0 {
				t.Fatal("nothing rendered")
			}
			for _, o := range r.Objects {
				if o.GetLabels()["app.kubernetes.io/part-of"] != "sortie" {
					t.Errorf("%s %s lacks the chart's labels", o.GetKind(), o.GetName())
				}
				var spec *corev1.PodSpec
				switch o.GetKind() {
				case "Deployment":
					spec = &convert[appsv1.Deployment](t, o).Spec.Template.Spec
				case "StatefulSet":
					spec = &convert[appsv1.StatefulSet](t, o).Spec.Template.Spec
				default:
					continue
				}
				checkPodSpec(t, o.GetName(), spec)
			}
		})
	}
}

func checkPodSpec(t *testing.T, name string, spec *corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod security context %+v, want runAsNonRoot and seccomp RuntimeDefault", name, psc)
	}
	for _, ctr := range spec.Containers {
		sc := ctr.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no security context", name, ctr.Name)
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: root filesystem is writable", name, ctr.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: privilege escalation allowed", name, ctr.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities %+v, want all dropped", name, ctr.Name, sc.Capabilities)
		}
		if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil {
			t.Errorf("%s/%s: liveness and readiness probes are required", name, ctr.Name)
		}
		if ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: memory request and limit are required", name, ctr.Name)
		}
	}
}

// TestRenderDetails checks what particular values must produce.
func TestRenderDetails(t *testing.T) {
	c := loadChart(t)
	sets := valueSets("sortie-ws")
	tests := map[string]struct {
		set   string
		check func(t *testing.T, r *Rendered)
	}{
		"default: PDBs for the scaled services only": {set: "default", check: func(t *testing.T, r *Rendered) {
			got := keys(r.Find("PodDisruptionBudget"))
			want := []string{"sortie-auth", "sortie-mission-control", "sortie-workspace-operator"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("PDBs (-want +got):\n%s", d)
			}
		}},
		"default: the CRD is templated and kept": {set: "default", check: func(t *testing.T, r *Rendered) {
			crd, ok := r.Find("CustomResourceDefinition")["workspaces.sortie.dev"]
			if !ok {
				t.Fatal("no Workspace CRD")
			}
			if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
				t.Errorf("resource-policy %q, want keep", got)
			}
		}},
		"dev mode: the CRD is not kept": {set: "dev mode without persistence or policies", check: func(t *testing.T, r *Rendered) {
			crd := r.Find("CustomResourceDefinition")["workspaces.sortie.dev"]
			if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
				t.Error("crds.keep=false still keeps the CRD")
			}
			if len(r.Find("NetworkPolicy")) != 0 {
				t.Error("networkPolicy.enabled=false still renders NetworkPolicies")
			}
			if !strings.Contains(r.Notes, "Authentication is OFF") {
				t.Errorf("NOTES do not warn about dev mode:\n%s", r.Notes)
			}
		}},
		"default: generated secrets": {set: "default", check: func(t *testing.T, r *Rendered) {
			secrets := r.Find("Secret")
			want := []string{"sortie-admin", "sortie-auth-keys", "sortie-library", "sortie-mission-control", "sortie-redis", "sortie-service-clients"}
			if d := cmp.Diff(want, keys(secrets)); d != "" {
				t.Fatalf("Secrets (-want +got):\n%s", d)
			}
			clients := convert[corev1.Secret](t, secrets["sortie-service-clients"])
			var file map[string]string
			if err := yaml.Unmarshal(clients.Data["clients.json"], &file); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"workspace-operator", "mission-control"} {
				if file[id] == "" || file[id] != string(clients.Data[id]) || len(file[id]) < 24 {
					t.Errorf("client %s: clients.json has %q, its key %q", id, file[id], clients.Data[id])
				}
			}
			key := string(convert[corev1.Secret](t, secrets["sortie-auth-keys"]).Data["signing-key.pem"])
			if !strings.HasPrefix(key, "-----BEGIN PRIVATE KEY-----\nCreated: ") {
				t.Errorf("signing key is not a PEM with a Created header:\n%s", key)
			}
			if !strings.Contains(r.Notes, "kubectl -n sortie get secret sortie-admin") {
				t.Errorf("NOTES do not say where the password is:\n%s", r.Notes)
			}
		}},
		"existing secrets: none generated but the service clients": {set: "external Redis, several users, existing secrets", check: func(t *testing.T, r *Rendered) {
			if d := cmp.Diff([]string{"sortie-service-clients"}, keys(r.Find("Secret"))); d != "" {
				t.Errorf("Secrets (-want +got):\n%s", d)
			}
			if _, ok := r.Find("StatefulSet")["sortie-redis"]; ok {
				t.Error("redis.enabled=false still renders Redis")
			}
			if _, ok := r.Find("PersistentVolumeClaim")["sortie-library"]; ok {
				t.Error("library.persistence.existingClaim still renders a claim")
			}
			env := containerEnv(t, r, "sortie-auth")
			if env["SORTIE_REDIS_URL"] != "rediss://redis.example.com:6380/2" || env["SORTIE_AUTH_USERS_FILE"] == "" {
				t.Errorf("auth env: %v", env)
			}
			// With several users, the operator gives each a default
			// workspace and a host runtime of their own.
			for _, d := range []string{"sortie-workspace-operator", "sortie-mission-control"} {
				if mode := containerEnv(t, r, d)["SORTIE_AUTH_MODE"]; mode != "multi_user" {
					t.Errorf("%s: SORTIE_AUTH_MODE %q, want multi_user", d, mode)
				}
			}
		}},
		"operator Role: the generated rules, in the workspace namespace": {set: "separate workspace namespace", check: func(t *testing.T, r *Rendered) {
			role := convert[rbacv1.Role](t, r.Find("Role")["sortie-workspace-operator"])
			if role.Namespace != "sortie-ws" {
				t.Errorf("operator Role in %q, want the workspace namespace", role.Namespace)
			}
			if d := cmp.Diff(generatedOperatorRules(t), role.Rules); d != "" {
				t.Errorf("operator rules differ from config/rbac/role.yaml (-want +got):\n%s", d)
			}
			if len(r.Find("ClusterRole"))+len(r.Find("ClusterRoleBinding")) != 0 {
				t.Error("the chart grants cluster-wide permissions")
			}
			if _, ok := r.Find("Namespace")["sortie-ws"]; !ok {
				t.Error("createNamespace did not render the Namespace")
			}
			env := containerEnv(t, r, "sortie-workspace-operator")
			if env["SORTIE_WORKSPACE_NAMESPACE"] != "sortie-ws" || env["SORTIE_AGENT_IMAGE"] != "registry.example.com/sortie/sortie-workspace-agent:1.2.3" {
				t.Errorf("operator env: %v", env)
			}
		}},
		"workspace NetworkPolicy: only the operator, on the agent port": {set: "separate workspace namespace", check: func(t *testing.T, r *Rendered) {
			np := convert[networkingv1.NetworkPolicy](t, r.Find("NetworkPolicy")["sortie-workspaces"])
			if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 7070 {
				t.Fatalf("ingress %+v", np.Spec.Ingress)
			}
			from := np.Spec.Ingress[0].From[0]
			if from.PodSelector.MatchLabels["app.kubernetes.io/component"] != "workspace-operator" || from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "sortie" {
				t.Errorf("workspace Pods admit %+v", from)
			}
			if len(np.Spec.Egress) != 0 || len(np.Spec.PolicyTypes) != 2 {
				t.Errorf("egress [] must deny all egress: %+v", np.Spec)
			}
		}},
		"default: workspaces in a namespace of their own, Pod Security baseline": {set: "default", check: func(t *testing.T, r *Rendered) {
			const wsns = "sortie-workspaces"
			nsObj, ok := r.Find("Namespace")[wsns]
			if !ok {
				t.Fatalf("no Namespace %s rendered", wsns)
			}
			for _, mode := range []string{"enforce", "warn", "audit"} {
				if got := nsObj.GetLabels()["pod-security.kubernetes.io/"+mode]; got != "baseline" {
					t.Errorf("pod-security %s = %q, want baseline", mode, got)
				}
			}
			if nsObj.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
				t.Error("the workspace namespace (and its volumes) is not kept on uninstall")
			}
			for _, kind := range []string{"Role", "RoleBinding"} {
				for _, name := range []string{"sortie-workspace-operator", "sortie-library"} {
					if o := r.Find(kind)[name]; o == nil || o.GetNamespace() != wsns {
						t.Errorf("%s %s not in %s", kind, name, wsns)
					}
				}
			}
			// Nothing grants the operator anything in the release namespace,
			// where the control plane's Secrets are.
			for name, o := range r.Find("RoleBinding") {
				b := convert[rbacv1.RoleBinding](t, o)
				for _, s := range b.Subjects {
					if s.Name == "sortie-workspace-operator" && b.Namespace != wsns {
						t.Errorf("RoleBinding %s/%s binds the operator outside the workspace namespace", b.Namespace, name)
					}
				}
			}
			if np := r.Find("NetworkPolicy")["sortie-workspaces"]; np == nil || np.GetNamespace() != wsns {
				t.Errorf("the workspace NetworkPolicy is not in %s", wsns)
			}
			if env := containerEnv(t, r, "sortie-workspace-operator"); env["SORTIE_WORKSPACE_NAMESPACE"] != wsns {
				t.Errorf("SORTIE_WORKSPACE_NAMESPACE = %q", env["SORTIE_WORKSPACE_NAMESPACE"])
			}
			if env := containerEnv(t, r, "sortie-library"); env["SORTIE_LIBRARY_CONFIGMAP_NAMESPACE"] != wsns {
				t.Errorf("the library publishes in %q", env["SORTIE_LIBRARY_CONFIGMAP_NAMESPACE"])
			}
		}},
		"default: the operator's workload settings": {set: "default", check: func(t *testing.T, r *Rendered) {
			env := containerEnv(t, r, "sortie-workspace-operator")
			for k, want := range map[string]string{
				"SORTIE_WORKSPACE_REQUESTS":        "cpu=10m,memory=128Mi,ephemeral-storage=256Mi",
				"SORTIE_WORKSPACE_LIMITS":          "cpu=2,memory=4Gi,ephemeral-storage=10Gi",
				"SORTIE_WORKSPACE_MAX_RESOURCES":   "cpu=8,memory=16Gi,ephemeral-storage=50Gi",
				"SORTIE_WORKSPACE_CAPABILITIES":    "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID",
				"SORTIE_WORKSPACE_RUNTIME_CLASSES": "",
				"SORTIE_WORKSPACE_RUNTIME_CLASS":   "",
			} {
				if got, ok := env[k]; !ok || got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			vap := r.Find("ValidatingAdmissionPolicy")["sortie-workspaces-sortie"]
			bind := r.Find("ValidatingAdmissionPolicyBinding")["sortie-workspaces-sortie"]
			if vap == nil || bind == nil {
				t.Fatalf("no admission policy and binding: %v %v", keys(r.Find("ValidatingAdmissionPolicy")), keys(r.Find("ValidatingAdmissionPolicyBinding")))
			}
			sel, _, _ := unstructured.NestedString(bind.Object, "spec", "matchResources", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")
			if sel != "sortie-workspaces" {
				t.Errorf("the policy is bound to %q", sel)
			}
			if vs, _, _ := unstructured.NestedSlice(vap.Object, "spec", "validations"); len(vs) != 6 {
				t.Errorf("%d validations, want one per request and limit of cpu, memory and ephemeral-storage", len(vs))
			}
		}},
		"workspaces in the release namespace": {set: "default", check: func(t *testing.T, _ *Rendered) {
			r := render(t, loadChart(t), "sortie", map[string]any{"workspaces": map[string]any{"namespace": "sortie"}})
			if len(r.Find("Namespace")) != 0 {
				t.Error("a Namespace was rendered for the release's own")
			}
			if role := r.Find("Role")["sortie-workspace-operator"]; role == nil || role.GetNamespace() != "sortie" {
				t.Error("the operator's Role is not in the shared namespace")
			}
		}},
		"default: workspace egress": {set: "default", check: func(t *testing.T, r *Rendered) {
			np := convert[networkingv1.NetworkPolicy](t, r.Find("NetworkPolicy")["sortie-workspaces"])
			for _, tc := range []struct {
				addr string
				port int32
				want bool
			}{
				{"8.8.8.8", 443, true}, {"2001:4860:4860::8888", 443, true}, {"140.82.112.3", 22, true}, // the internet
				{"10.96.0.10", 53, true}, {"169.254.20.10", 53, true}, // DNS, wherever the resolver is
				{"169.254.169.254", 80, false}, {"169.254.170.2", 80, false}, // cloud metadata, ECS credentials
				{"fd00:ec2::254", 80, false}, {"fe80::a9fe:a9fe", 80, false}, // IPv6 metadata, link-local
				{"100.100.100.200", 80, false}, {"100.64.0.1", 443, false}, // CGNAT (Alibaba metadata)
				{"10.96.0.1", 443, false}, {"10.244.0.5", 7070, false}, {"192.168.1.1", 80, false}, {"172.16.0.1", 80, false},
				{"fd12:3456::1", 443, false},
			} {
				if got := egressAllows(t, np.Spec.Egress, tc.addr, tc.port); got != tc.want {
					t.Errorf("egress to %s:%d allowed %v, want %v", tc.addr, tc.port, got, tc.want)
				}
			}
		}},
		"control-plane NetworkPolicies never admit everyone": {set: "default", check: func(t *testing.T, r *Rendered) {
			for name, o := range r.Find("NetworkPolicy") {
				np := convert[networkingv1.NetworkPolicy](t, o)
				for _, rule := range np.Spec.Ingress {
					if len(rule.From) == 0 {
						t.Errorf("%s: an ingress rule without peers admits everyone", name)
					}
				}
			}
		}},
		"library Role: one ConfigMap": {set: "default", check: func(t *testing.T, r *Rendered) {
			role := convert[rbacv1.Role](t, r.Find("Role")["sortie-library"])
			want := []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"sortie-library-revision"}, Verbs: []string{"get", "update"}},
			}
			if d := cmp.Diff(want, role.Rules); d != "" {
				t.Errorf("library rules (-want +got):\n%s", d)
			}
		}},
		"ingress-nginx: SSE-safe": {set: "ingress with TLS on ingress-nginx", check: func(t *testing.T, r *Rendered) {
			ing := r.Find("Ingress")["sortie"]
			a := ing.GetAnnotations()
			for k, v := range map[string]string{
				"nginx.ingress.kubernetes.io/proxy-buffering":    "off",
				"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
				"cert-manager.io/cluster-issuer":                 "letsencrypt",
			} {
				if a[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, a[k], v)
				}
			}
			in := convert[networkingv1.Ingress](t, ing)
			if *in.Spec.IngressClassName != "nginx" || in.Spec.TLS[0].SecretName != "sortie-example-tls" || in.Spec.Rules[0].Host != "sortie.example.com" {
				t.Errorf("ingress spec %+v", in.Spec)
			}
		}},
		"local node: Service variables instead of DNS": {set: "local node", check: func(t *testing.T, r *Rendered) {
			env := containerEnv(t, r, "sortie-workspace-operator")
			if got := env["SORTIE_LIBRARY_URL"]; got != "http://$(SORTIE_LIBRARY_SERVICE_HOST):$(SORTIE_LIBRARY_SERVICE_PORT_HTTP)" {
				t.Errorf("SORTIE_LIBRARY_URL = %q", got)
			}
			// The operator and the library check revoked tokens in Redis.
			for _, d := range []string{"sortie-workspace-operator", "sortie-library"} {
				if env := containerEnv(t, r, d); env["SORTIE_REDIS_URL"] != "redis://$(SORTIE_REDIS_SERVICE_HOST):$(SORTIE_REDIS_SERVICE_PORT_REDIS)/0" || env["SORTIE_REDIS_PASSWORD_FILE"] == "" {
					t.Errorf("%s: Redis env %v", d, env)
				}
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.check(t, render(t, c, "sortie", sets[tc.set].values))
		})
	}
}

// egressAllows evaluates NetworkPolicy egress rules for a TCP connection
// to addr:port, as a CNI that enforces them does.
func egressAllows(t *testing.T, rules []networkingv1.NetworkPolicyEgressRule, addr string, port int32) bool {
	t.Helper()
	ip := netip.MustParseAddr(addr)
	inBlock := func(b *networkingv1.IPBlock) bool {
		cidr := netip.MustParsePrefix(b.CIDR)
		if !cidr.Contains(ip) {
			return false
		}
		for _, e := range b.Except {
			if netip.MustParsePrefix(e).Contains(ip) {
				return false
			}
		}
		return true
	}
	for _, rule := range rules {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			portOK = portOK || ((p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) && (p.Port == nil || p.Port.IntValue() == int(port)))
		}
		peerOK := len(rule.To) == 0
		for _, peer := range rule.To {
			peerOK = peerOK || (peer.IPBlock != nil && inBlock(peer.IPBlock))
		}
		if portOK && peerOK {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func containerEnv(t *testing.T, r *Rendered, deployment string) map[string]string {
	t.Helper()
	o, ok := r.Find("Deployment")[deployment]
	if !ok {
		t.Fatalf("no Deployment %s", deployment)
	}
	env := map[string]string{}
	for _, e := range convert[appsv1.Deployment](t, o).Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

func generatedOperatorRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "services", "workspace-operator", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	return role.Rules
}

// TestGeneratedCopiesAreCurrent fails when charts/sortie/files/ no longer
// matches what hack/generate.sh copies there (run make generate).
func TestGeneratedCopiesAreCurrent(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string]string{
		"api/crds/sortie.dev_workspaces.yaml":               "charts/sortie/files/crds/sortie.dev_workspaces.yaml",
		"services/workspace-operator/config/rbac/role.yaml": "charts/sortie/files/rbac/workspace-operator-role.yaml",
	}
	for src, dst := range copies {
		a, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make generate", dst, src)
		}
	}
}

// TestRoutesMatchRouteTable: the Ingress and the HTTPRoute route exactly
// api.Routes(), prefix by prefix, to the Service of each route's service.
func TestRoutesMatchRouteTable(t *testing.T) {
	c := loadChart(t)
	var want []string
	for _, rt := range api.Routes() {
		want = append(want, rt.Prefix+" Prefix -> sortie-"+rt.Service+":http")
	}
	r := render(t, c, "sortie", valueSets("")["ingress with TLS on ingress-nginx"].values)
	ing := convert[networkingv1.Ingress](t, r.Find("Ingress")["sortie"])
	if len(ing.Spec.Rules) != 1 {
		t.Fatalf("want one rule, got %d", len(ing.Spec.Rules))
	}
	var got []string
	for _, p := range ing.Spec.Rules[0].HTTP.Paths {
		got = append(got, p.Path+" "+string(*p.PathType)+" -> "+p.Backend.Service.Name+":"+p.Backend.Service.Port.Name)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Ingress paths differ from api.Routes() (-want +got):\n%s", d)
	}

	r = render(t, c, "sortie", valueSets("")["gateway API and ServiceMonitor"].values)
	route := r.Find("HTTPRoute")["sortie"]
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	got = nil
	for _, rule := range rules {
		m := rule.(map[string]any)
		match := m["matches"].([]any)[0].(map[string]any)["path"].(map[string]any)
		backend := m["backendRefs"].([]any)[0].(map[string]any)
		got = append(got, match["value"].(string)+" Prefix -> "+backend["name"].(string)+":http")
		if match["type"] != "PathPrefix" {
			t.Errorf("HTTPRoute match %v, want PathPrefix", match)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("HTTPRoute rules differ from api.Routes() (-want +got):\n%s", d)
	}
}

// TestLint runs helm lint --strict on every value set.
func TestLint(t *testing.T) {
	for name, set := range valueSets("sortie-ws") {
		t.Run(name, func(t *testing.T) {
			msgs, err := Lint(set.values)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				t.Error(m)
			}
		})
	}
}

// TestSchemaRejectsBadValues: values.schema.json refuses what would make
// a broken install, naming the value (as a JSON pointer).
func TestSchemaRejectsBadValues(t *testing.T) {
	c := loadChart(t)
	tests := map[string]struct {
		values map[string]any
		want   string
	}{
		"unknown top-level key":        {map[string]any{"replicaCount": 3}, "replicaCount"},
		"unknown auth mode":            {map[string]any{"auth": map[string]any{"mode": "none"}}, "/auth/mode"},
		"short admin password":         {map[string]any{"auth": map[string]any{"admin": map[string]any{"password": "short"}}}, "/auth/admin/password"},
		"multi mode without users":     {map[string]any{"auth": map[string]any{"mode": "multi"}}, "existingSecret"},
		"zero replicas":                {map[string]any{"missionControl": map[string]any{"replicas": 0}}, "/missionControl/replicas"},
		"replicas as a string":         {map[string]any{"auth": map[string]any{"replicas": "2"}}, "/auth/replicas"},
		"unknown distro":               {map[string]any{"workspaces": map[string]any{"defaultDistro": "fedora"}}, "/workspaces/defaultDistro"},
		"bad pull policy":              {map[string]any{"workspaces": map[string]any{"imagePullPolicy": "Sometimes"}}, "/workspaces/imagePullPolicy"},
		"bad storage size":             {map[string]any{"workspaces": map[string]any{"storage": "ten gigs"}}, "/workspaces/storage"},
		"bad duration":                 {map[string]any{"workspaces": map[string]any{"startTimeout": "10 minutes"}}, "/workspaces/startTimeout"},
		"agent port out of range":      {map[string]any{"workspaces": map[string]any{"agentPort": 70000}}, "/workspaces/agentPort"},
		"bad namespace name":           {map[string]any{"workspaces": map[string]any{"namespace": "Work_Spaces"}}, "/workspaces/namespace"},
		"external Redis without a URL": {map[string]any{"redis": map[string]any{"enabled": false}}, "/externalRedis/url"},
		"external Redis over http":     {map[string]any{"redis": map[string]any{"enabled": false}, "externalRedis": map[string]any{"url": "http://redis"}}, "/externalRedis/url"},
		"bad service discovery":        {map[string]any{"serviceDiscovery": "consul"}, "serviceDiscovery"},
		"bad log level":                {map[string]any{"logLevel": "verbose"}, "logLevel"},
		"typo in ingress":              {map[string]any{"ingress": map[string]any{"hostname": "x"}}, "hostname"},
		"bad image digest":             {map[string]any{"auth": map[string]any{"image": map[string]any{"repository": "a", "digest": "latest"}}}, "/auth/image/digest"},
		"a capability beyond baseline": {map[string]any{"workspaces": map[string]any{"capabilities": []any{"CHOWN", "SYS_ADMIN"}}}, "/workspaces/capabilities/1"},
		"a GPU maximum":                {map[string]any{"workspaces": map[string]any{"resources": map[string]any{"max": map[string]any{"nvidia.com/gpu": 1}}}}, "nvidia.com/gpu"},
		"a bad limit":                  {map[string]any{"workspaces": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "4 gigs"}}}}, "/workspaces/resources/limits/memory"},
		"a bad RuntimeClass":           {map[string]any{"workspaces": map[string]any{"runtimeClasses": []any{"gVisor"}}}, "/workspaces/runtimeClasses/0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(c, "sortie", "sortie", tc.values)
			if err == nil {
				t.Fatal("rendered; want the schema to refuse it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}
