package controller

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// multiUser is the operator's setting for multi-user mode.
var multiUser = map[string]string{"SORTIE_AUTH_MODE": "multi_user"}

func withEnv(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func ownedHost(ns, name, owner, path string) *v1alpha1.Workspace {
	ws := hostWS(ns, name, path)
	ws.Spec.Owner = owner
	return ws
}

// TestRuntimePerOwner: in multi-user mode each owner's host workspaces
// live in a runtime of their own (Pod, volume, agent Secret, labelled
// with the owner), unowned ones in the shared runtime; an event on one
// runtime reaches only its workspaces, through the index.
func TestRuntimePerOwner(t *testing.T) {
	e := startOperator(t, withEnv(localImages, multiUser))
	ctx := context.Background()
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	create(t, e, ownedHost(e.ns, "a-home", "alice", v1alpha1.HostRoot))
	create(t, e, ownedHost(e.ns, "a-proj", "alice", "/workspaces/proj"))
	create(t, e, ownedHost(e.ns, "b-home", "bob", v1alpha1.HostRoot))
	create(t, e, ownedHost(e.ns, "c-home", "Carol@Example.org", v1alpha1.HostRoot))
	create(t, e, hostWS(e.ns, "unowned", "/workspaces/admin"))

	carol := v1alpha1.OwnerKey("Carol@Example.org")
	runtimes := map[string]string{ // runtime → owner key
		HostRuntimeName + "-alice": "alice", HostRuntimeName + "-bob": "bob",
		HostRuntimeName + "-" + carol: carol, HostRuntimeName: "",
	}
	for rt, key := range runtimes {
		eventually(t, rt, podExists(e, rt+"-pod"))
		pod, _ := getPod(e, rt+"-pod")
		if pod.Labels[v1alpha1.LabelOwner] != key || pod.Labels[LabelComponent] != ComponentHostRuntime {
			t.Errorf("%s labels = %v, want owner %q", pod.Name, pod.Labels, key)
		}
		if metav1.GetControllerOf(pod) != nil {
			t.Errorf("%s is owned by a workspace; a runtime belongs to none", pod.Name)
		}
		if vol := pod.Spec.Volumes[2].PersistentVolumeClaim; vol == nil || vol.ClaimName != rt+"-data" {
			t.Errorf("%s mounts %+v, want its own volume %s-data", pod.Name, pod.Spec.Volumes[2], rt)
		}
		if sec := pod.Spec.Volumes[1].Secret; sec == nil || sec.SecretName != rt+"-agent" {
			t.Errorf("%s reads agent secret %+v, want its own %s-agent", pod.Name, pod.Spec.Volumes[1], rt)
		}
		for _, obj := range []client.Object{&corev1.Secret{}, &corev1.PersistentVolumeClaim{}} {
			name := rt + "-agent"
			if _, ok := obj.(*corev1.PersistentVolumeClaim); ok {
				name = rt + "-data"
			}
			if err := e.client.Get(ctx, e.key(name), obj); err != nil {
				t.Errorf("%s: %v", name, err)
			} else if obj.GetLabels()[v1alpha1.LabelOwner] != key {
				t.Errorf("%s labels = %v", name, obj.GetLabels())
			}
		}
	}
	var a, b corev1.Secret
	_ = e.client.Get(ctx, e.key(HostRuntimeName+"-alice-agent"), &a)
	_ = e.client.Get(ctx, e.key(HostRuntimeName+"-bob-agent"), &b)
	if string(a.Data["token"]) == string(b.Data["token"]) {
		t.Error("alice's and bob's runtimes share an agent token")
	}
	for rt := range runtimes {
		runPod(t, e, rt+"-pod")
	}
	for _, name := range []string{"a-home", "a-proj", "b-home", "c-home", "unowned"} {
		eventually(t, name+" ready", phaseIs(t, e, name, v1alpha1.PhaseReady))
	}
	if ws := getWS(t, e, "a-proj"); ws.Status.PodName != HostRuntimeName+"-alice-pod" {
		t.Errorf("a-proj lives in %s", ws.Status.PodName)
	}

	// alice's runtime Pod maps to alice's host workspaces only, without a
	// list of every workspace.
	pod, _ := getPod(e, HostRuntimeName+"-alice-pod")
	before := e.reads.unindexedLists()
	var got []string
	for _, req := range e.r.hostWorkspacesOf(ctx, pod) {
		got = append(got, req.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a-home", "a-proj"}) {
		t.Errorf("alice's runtime maps to %v, want her host workspaces", got)
	}
	shared, _ := getPod(e, HostRuntimeName+"-pod")
	if reqs := e.r.hostWorkspacesOf(ctx, shared); len(reqs) != 1 || reqs[0].Name != "unowned" {
		t.Errorf("the shared runtime maps to %v, want the unowned workspace", reqs)
	}
	if n := e.reads.unindexedLists() - before; n != 0 {
		t.Errorf("mapping a runtime Pod's event listed every workspace %d times", n)
	}

	// Losing alice's runtime touches alice's workspaces only.
	if err := e.client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a-proj not ready", func() (bool, string) {
		ws := getWS(t, e, "a-proj")
		return ws.Status.Phase != v1alpha1.PhaseReady, string(ws.Status.Phase)
	})
	if ws := getWS(t, e, "b-home"); ws.Status.Phase != v1alpha1.PhaseReady {
		t.Errorf("bob's workspace is %s after alice's runtime went", ws.Status.Phase)
	}
	if n := e.reads.unindexedLists(); n != 0 {
		t.Errorf("the controller listed every workspace %d times", n)
	}
}

// TestSingleUserKeepsOneRuntime: without multi-user mode every host
// workspace, owned or not, lives in the one shared runtime, as before.
func TestSingleUserKeepsOneRuntime(t *testing.T) {
	e := startOperator(t, localImages)
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	create(t, e, hostWS(e.ns, "host", v1alpha1.HostRoot))
	create(t, e, ownedHost(e.ns, "mine", "default", "/workspaces/mine"))
	eventually(t, "the runtime pod", podExists(e, runtimePod))
	runPod(t, e, runtimePod)
	eventually(t, "mine ready", phaseIs(t, e, "mine", v1alpha1.PhaseReady))
	if ws := getWS(t, e, "mine"); ws.Status.PodName != runtimePod {
		t.Errorf("an owned host workspace in single-user mode lives in %s", ws.Status.PodName)
	}
	var pods corev1.PodList
	if err := e.client.List(context.Background(), &pods, client.InNamespace(e.ns)); err != nil || len(pods.Items) != 1 {
		t.Errorf("pods: %d (%v), want the one runtime", len(pods.Items), err)
	}
}

// TestOwnerLabel: the controller keeps sortie.dev/owner equal to the key
// of spec.owner, however the workspace was made.
func TestOwnerLabel(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "plain", func(s *v1alpha1.WorkspaceSpec) { s.Owner = "alice" }))
	long := newWS(e.ns, "long", func(s *v1alpha1.WorkspaceSpec) { s.Owner = "Dora.Explorer@example.org" })
	create(t, e, long)
	forged := newWS(e.ns, "forged")
	forged.Labels = map[string]string{v1alpha1.LabelOwner: "alice"}
	create(t, e, forged)
	for name, want := range map[string]string{"plain": "alice", "long": v1alpha1.OwnerKey("Dora.Explorer@example.org"), "forged": ""} {
		eventually(t, name+" labelled", func() (bool, string) {
			ws := getWS(t, e, name)
			v, has := ws.Labels[v1alpha1.LabelOwner]
			return v == want && has == (want != ""), v
		})
	}
	eventually(t, "the pod", podExists(e, "plain-pod"))
	if pod, _ := getPod(e, "plain-pod"); pod.Labels[v1alpha1.LabelOwner] != "alice" {
		t.Errorf("pod labels = %v", pod.Labels)
	}
}

// TestEnvSecret: a container workspace's secret environment reaches its
// Pod through envFrom, never the Pod spec; the Pod waits for the Secret,
// and a Secret held by another object is refused.
func TestEnvSecret(t *testing.T) {
	e := startOperator(t, localImages)
	ctx := context.Background()
	create(t, e, newWS(e.ns, "sec", func(s *v1alpha1.WorkspaceSpec) { s.EnvSecretRef = "sec-env" }))
	eventually(t, "waiting for the secret", func() (bool, string) {
		ws := getWS(t, e, "sec")
		for _, c := range ws.Status.Conditions {
			if c.Type == v1alpha1.ConditionAgentReady && c.Message == "waiting for the Secret sec-env with the workspace's secret environment (labelled sortie.dev/workspace=sec)" {
				return true, ""
			}
		}
		return false, string(ws.Status.Phase)
	})
	if _, err := getPod(e, "sec-pod"); err == nil {
		t.Fatal("the pod was made before its env Secret existed")
	}
	ws := getWS(t, e, "sec")
	// Labelled as REST makes it: the operator's cache holds only its own
	// labelled Secrets (TestOperatorReadsOnlyItsSecrets).
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec-env", Namespace: e.ns, Labels: map[string]string{LabelWorkspace: "sec"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion().String(), Kind: "Workspace", Name: ws.Name, UID: ws.UID, Controller: ptrTrue()}}},
		StringData: map[string]string{"API_KEY": "s3cret"},
	}
	if err := e.client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod", podExists(e, "sec-pod"))
	pod, _ := getPod(e, "sec-pod")
	main := pod.Spec.Containers[0]
	if len(main.EnvFrom) != 1 || main.EnvFrom[0].SecretRef == nil || main.EnvFrom[0].SecretRef.Name != "sec-env" {
		t.Errorf("envFrom = %+v", main.EnvFrom)
	}
	for _, ev := range main.Env {
		if ev.Value == "s3cret" || ev.Name == "API_KEY" {
			t.Errorf("the secret value is in the pod spec: %+v", ev)
		}
	}

	// Another workspace's Secret under this one's name: refused.
	create(t, e, newWS(e.ns, "other", func(s *v1alpha1.WorkspaceSpec) { s.EnvSecretRef = "other-env" }))
	thief := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "other-env", Namespace: e.ns, Labels: map[string]string{LabelWorkspace: "other"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion().String(), Kind: "Workspace", Name: ws.Name, UID: ws.UID, Controller: ptrTrue()}}},
		StringData: map[string]string{"X": "y"},
	}
	if err := e.client.Create(ctx, thief); err != nil {
		t.Fatal(err)
	}
	eventually(t, "other fails", phaseIs(t, e, "other", v1alpha1.PhaseError))
	if _, err := getPod(e, "other-pod"); err == nil {
		t.Error("a pod was made reading another workspace's Secret")
	}
}

func ptrTrue() *bool { b := true; return &b }
