package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/config"
)

// withEnvs is base with more settings on top.
func withEnvs(base map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// enforceBaseline labels the test's namespace as the chart labels the
// workspace namespace: the apiserver's Pod Security admission then refuses
// any Pod that baseline forbids.
func enforceBaseline(t *testing.T, e *env) {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: e.ns}, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for _, mode := range []string{"enforce", "warn", "audit"} {
		ns.Labels["pod-security.kubernetes.io/"+mode] = "baseline"
	}
	if err := e.client.Update(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// The admission is on: a privileged Pod is refused.
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: e.ns}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: debian, SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}
	if err := e.client.Create(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a privileged pod in a baseline namespace: %v, want refused", err)
	}
}

// checkHardened checks what every workspace Pod has, whoever asked for it.
func checkHardened(t *testing.T, pod *corev1.Pod, caps []corev1.Capability) {
	t.Helper()
	spec := pod.Spec
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp profile = %+v, want RuntimeDefault", pod.Name, spec.SecurityContext)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC || (spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken) {
		t.Errorf("%s: host namespaces or a service account token: %+v", pod.Name, spec)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", pod.Name, v.Name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s/%s: securityContext %+v, want no privilege, no escalation, drop ALL", pod.Name, c.Name, sc)
			continue
		}
		want := caps
		if c.Name == installerName {
			want = nil
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: the installer runs as root or writes its root: %+v", pod.Name, sc)
			}
		}
		if !slices.Equal(sc.Capabilities.Add, want) {
			t.Errorf("%s/%s: capabilities added %v, want %v", pod.Name, c.Name, sc.Capabilities.Add, want)
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.StorageEphemeral().IsZero() {
			t.Errorf("%s/%s: no limits: %+v", pod.Name, c.Name, c.Resources)
		}
	}
}

// TestPodHardening: the Pods of container workspaces and of the host
// runtime are admitted by Pod Security baseline and carry the
// securityContext, the default limits and the agent's own settings, which
// no env var of the workspace can change.
func TestPodHardening(t *testing.T) {
	e := startOperator(t, localImages)
	enforceBaseline(t, e)
	attack := map[string]string{
		"PROJECT":                  "p",
		"HOME":                     "/workspace/elsewhere",
		"SORTIE_AGENT_ROOTS":       "/",
		"SORTIE_AGENT_ADDR":        ":1",
		"SORTIE_AGENT_TOKEN_FILE":  "/tmp/mine",
		"SORTIE_AGENT_TOKEN":       "known",
		"SORTIE_AGENT_SUBREAPER":   "false",
		"SORTIE_WORKSPACE_NAME":    "not mine",
		"SORTIE_AGENT_INIT_SCRIPT": "/tmp/other.sh",
	}
	create(t, e, newWS(e.ns, "hard", func(s *v1alpha1.WorkspaceSpec) { s.EnvVars = attack }))
	create(t, e, &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "hosted", Namespace: e.ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "hosted", Path: "/workspaces/hosted"}})
	eventually(t, "the workspace pod", podExists(e, "hard-pod"))
	eventually(t, "the host runtime pod", podExists(e, HostRuntimeName+"-pod"))

	caps := e.r.Config.Workload.Capabilities
	if !slices.Equal(caps, config.DefaultCapabilities) {
		t.Fatalf("default capabilities %v, want %v", caps, config.DefaultCapabilities)
	}
	for _, name := range []string{"hard-pod", HostRuntimeName + "-pod"} {
		pod, err := getPod(e, name)
		if err != nil {
			t.Fatal(err)
		}
		checkHardened(t, pod, caps)
		res := pod.Spec.Containers[0].Resources
		for r, want := range map[string]string{
			"requests.cpu": "10m", "requests.memory": "128Mi", "requests.ephemeral-storage": "256Mi",
			"limits.cpu": "2", "limits.memory": "4Gi", "limits.ephemeral-storage": "10Gi",
		} {
			kind, name, _ := strings.Cut(r, ".")
			l := res.Requests
			if kind == "limits" {
				l = res.Limits
			}
			if q := l[corev1.ResourceName(name)]; q.String() != want {
				t.Errorf("%s: %s = %s, want the default %s", pod.Name, r, q.String(), want)
			}
		}
	}

	pod, _ := getPod(e, "hard-pod")
	env := map[string][]string{}
	for _, ev := range pod.Spec.Containers[0].Env {
		env[ev.Name] = append(env[ev.Name], ev.Value)
	}
	for name, want := range map[string]string{
		"PROJECT": "p", "HOME": "/workspace/elsewhere", // the workspace's own
		"SORTIE_AGENT_ROOTS": "/workspace,/tmp", "SORTIE_AGENT_ADDR": ":7070", // the agent's
		"SORTIE_AGENT_TOKEN_FILE": "/etc/sortie/token", "SORTIE_AGENT_INIT_SCRIPT": "/etc/sortie/init.sh",
		"SORTIE_WORKSPACE_NAME": "My hard",
	} {
		if got := env[name]; len(got) != 1 || got[0] != want {
			t.Errorf("env %s = %q, want exactly %q", name, got, want)
		}
	}
	for _, name := range []string{"SORTIE_AGENT_TOKEN", "SORTIE_AGENT_SUBREAPER"} {
		if got, ok := env[name]; ok {
			t.Errorf("env %s = %q: a workspace set an agent setting", name, got)
		}
	}
}

// TestWorkspaceResources: what a workspace asks for, over the defaults,
// within the operator's maxima; above them there is no Pod and the
// workspace says why.
func TestWorkspaceResources(t *testing.T) {
	e := startOperator(t, withEnvs(localImages, map[string]string{
		"SORTIE_WORKSPACE_REQUESTS":      "cpu=100m,memory=256Mi",
		"SORTIE_WORKSPACE_LIMITS":        "cpu=1,memory=1Gi,ephemeral-storage=2Gi",
		"SORTIE_WORKSPACE_MAX_RESOURCES": "cpu=4,memory=8Gi,ephemeral-storage=20Gi",
	}))
	enforceBaseline(t, e)
	tests := []struct {
		name     string
		res      *v1alpha1.WorkspaceResources
		requests string // cpu/memory/ephemeral-storage as the Pod gets them
		limits   string
		refused  string // the error, when refused
	}{
		// A limit without a request: the apiserver makes the request the limit.
		{name: "defaults", requests: "100m/256Mi/2Gi", limits: "1/1Gi/2Gi"},
		{name: "own limits", res: resources("", "", "1Gi", "3", "6Gi", "10Gi"), requests: "100m/256Mi/1Gi", limits: "3/6Gi/10Gi"},
		{name: "request over the default limit", res: resources("2", "", "", "", "", ""), requests: "2/256Mi/2Gi", limits: "2/1Gi/2Gi"},
		{name: "limit under the default request", res: resources("", "", "", "", "128Mi", ""), requests: "100m/128Mi/2Gi", limits: "1/128Mi/2Gi"},
		{name: "at the maxima", res: resources("4", "8Gi", "20Gi", "4", "8Gi", "20Gi"), requests: "4/8Gi/20Gi", limits: "4/8Gi/20Gi"},
		{name: "cpu limit over the maximum", res: resources("", "", "", "5", "", ""), refused: "the cpu limit 5 is above the maximum 4"},
		{name: "memory request over the maximum", res: resources("", "9Gi", "", "", "", ""), refused: "the memory request 9Gi is above the maximum 8Gi"},
		{name: "storage over the maximum", res: resources("", "", "", "", "", "100Gi"), refused: "the ephemeral-storage limit 100Gi is above the maximum 20Gi"},
	}
	for i, tc := range tests {
		name := fmt.Sprintf("res%d", i)
		create(t, e, newWS(e.ns, name, func(s *v1alpha1.WorkspaceSpec) { s.Resources = tc.res }))
		if tc.refused != "" {
			eventually(t, tc.name+": refused", func() (bool, string) {
				ws := getWS(t, e, name)
				c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionReady)
				return ws.Status.Phase == v1alpha1.PhaseError && c != nil && c.Reason == v1alpha1.ReasonInvalidSpec &&
					strings.Contains(c.Message, tc.refused), fmt.Sprintf("%s %+v", ws.Status.Phase, c)
			})
			if _, err := getPod(e, name+"-pod"); err == nil {
				t.Errorf("%s: a pod was made", tc.name)
			}
			continue
		}
		eventually(t, tc.name+": the pod", podExists(e, name+"-pod"))
		pod, _ := getPod(e, name+"-pod")
		checkHardened(t, pod, e.r.Config.Workload.Capabilities)
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			if got := amounts(c.Resources.Requests); got != tc.requests {
				t.Errorf("%s: %s requests %s, want %s", tc.name, c.Name, got, tc.requests)
			}
			if got := amounts(c.Resources.Limits); got != tc.limits {
				t.Errorf("%s: %s limits %s, want %s", tc.name, c.Name, got, tc.limits)
			}
		}
	}
}

func amounts(l corev1.ResourceList) string {
	return l.Cpu().String() + "/" + l.Memory().String() + "/" + l.StorageEphemeral().String()
}

// TestRuntimeClass: a workspace's RuntimeClass (or the operator's default)
// reaches its Pod when the operator allows it; another makes no Pod.
func TestRuntimeClass(t *testing.T) {
	ctx := context.Background()
	// RuntimeClasses are cluster-wide and the apiserver refuses a Pod
	// naming one that does not exist: make them, named for this test.
	k := kube.Get(t)
	sandboxed, vm := "gvisor-"+t.Name()[4:14], "kata-"+t.Name()[4:14]
	sandboxed, vm = strings.ToLower(sandboxed), strings.ToLower(vm)
	for _, name := range []string{sandboxed, vm} {
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: "runsc"}
		if err := k.Client.Create(ctx, rc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k.Client.Delete(ctx, rc) })
	}
	e := startOperator(t, withEnvs(localImages, map[string]string{
		"SORTIE_WORKSPACE_RUNTIME_CLASSES": sandboxed + "," + vm,
		"SORTIE_WORKSPACE_RUNTIME_CLASS":   sandboxed,
	}))
	create(t, e, newWS(e.ns, "rc-default"))
	create(t, e, newWS(e.ns, "rc-own", func(s *v1alpha1.WorkspaceSpec) { s.RuntimeClassName = vm }))
	create(t, e, newWS(e.ns, "rc-other", func(s *v1alpha1.WorkspaceSpec) { s.RuntimeClassName = "runc" }))
	for name, want := range map[string]string{"rc-default": sandboxed, "rc-own": vm} {
		eventually(t, name+": the pod", podExists(e, name+"-pod"))
		pod, _ := getPod(e, name+"-pod")
		if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != want {
			t.Errorf("%s: runtimeClassName %v, want %s", name, pod.Spec.RuntimeClassName, want)
		}
	}
	eventually(t, "a class the operator does not allow", func() (bool, string) {
		ws := getWS(t, e, "rc-other")
		c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonInvalidSpec && strings.Contains(c.Message, `"runc" is not one the operator allows`), fmt.Sprintf("%+v", c)
	})
	if _, err := getPod(e, "rc-other-pod"); err == nil {
		t.Error("a pod was made with a RuntimeClass the operator does not allow")
	}
}

// TestStoppedPods: a Pod evicted for using more than its limits fails the
// workspace with a reason the user can act on; any other Pod that stopped
// for good fails it too, rather than leaving it "starting".
func TestStoppedPods(t *testing.T) {
	e := startOperator(t, localImages)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		phase           corev1.PodPhase
		reason, message string
		want            string
	}{
		"over": {corev1.PodSucceeded, "Evicted", "Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. ", v1alpha1.ReasonLimitExceeded},
		"node": {corev1.PodFailed, "Evicted", "The node was low on resource: memory.", v1alpha1.ReasonPodFailed},
		"done": {corev1.PodSucceeded, "", "", v1alpha1.ReasonPodFailed},
	} {
		create(t, e, newWS(e.ns, name))
		eventually(t, name+": the pod", podExists(e, name+"-pod"))
		runPod(t, e, name+"-pod")
		pod, _ := getPod(e, name+"-pod")
		pod.Status.Phase, pod.Status.Reason, pod.Status.Message = tc.phase, tc.reason, tc.message
		if err := e.client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		eventually(t, name+": "+tc.want, func() (bool, string) {
			ws := getWS(t, e, name)
			c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionAgentReady)
			return ws.Status.Phase == v1alpha1.PhaseError && c != nil && c.Reason == tc.want, fmt.Sprintf("%s %+v", ws.Status.Phase, c)
		})
		if c := meta.FindStatusCondition(getWS(t, e, name).Status.Conditions, v1alpha1.ConditionAgentReady); name == "done" &&
			!strings.Contains(c.Message, "ephemeral-storage limit, 10Gi") {
			t.Errorf("a pod that stopped without a reason: %q, want a word on the ephemeral-storage limit", c.Message)
		}
	}
}
