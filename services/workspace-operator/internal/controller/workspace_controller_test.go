package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

const debian = "localhost/debian:bookworm"

var localImages = map[string]string{
	"SORTIE_DISTRO_IMAGES":  "debian-bookworm=" + debian + ",ubuntu-noble=" + debian + "-as-noble",
	"SORTIE_DEFAULT_DISTRO": "debian-bookworm",
}

func create(t *testing.T, e *env, ws *v1alpha1.Workspace) {
	t.Helper()
	if err := e.client.Create(context.Background(), ws); err != nil {
		t.Fatalf("create workspace: %v", err)
	}
}

func update(t *testing.T, e *env, name string, f func(*v1alpha1.Workspace)) {
	t.Helper()
	for range 10 {
		ws := getWS(t, e, name)
		f(ws)
		err := e.client.Update(context.Background(), ws)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("update kept conflicting")
}

func podExists(e *env, name string) func() (bool, string) {
	return func() (bool, string) {
		_, err := getPod(e, name)
		return err == nil, fmt.Sprint(err)
	}
}

func TestCreateToReady(t *testing.T) {
	e := startOperator(t, localImages)
	ctx := context.Background()
	create(t, e, newWS(e.ns, "alpha"))

	eventually(t, "the pod", podExists(e, "alpha-pod"))
	pod, _ := getPod(e, "alpha-pod")
	ws := getWS(t, e, "alpha")
	if owner := metav1.GetControllerOf(pod); owner == nil || owner.UID != ws.UID {
		t.Errorf("pod owner = %v, want the workspace", owner)
	}
	main := pod.Spec.Containers[0]
	if main.Image != debian || main.Command[0] != "/sortie/bin/workspace-agent" {
		t.Errorf("main container runs %s %v, want the agent in %s", main.Image, main.Command, debian)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Image != "localhost/sortie-workspace-agent:dev" {
		t.Errorf("init containers = %+v, want the agent installer", pod.Spec.InitContainers)
	}
	found := false
	for _, ev := range main.Env {
		found = found || (ev.Name == "PROJECT" && ev.Value == "alpha")
	}
	if !found {
		t.Error("the workspace's env vars are not in the container")
	}
	sec := &corev1.Secret{}
	if err := e.client.Get(ctx, e.key("alpha-agent"), sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.Data["token"]) != 64 || string(sec.Data["init.sh"]) != "#!/bin/sh\necho hello\n" {
		t.Errorf("secret = token %d bytes, init %q", len(sec.Data["token"]), sec.Data["init.sh"])
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := e.client.Get(ctx, e.key("alpha-data"), pvc); err != nil {
		t.Fatal(err)
	}
	if metav1.GetControllerOf(pvc) == nil {
		t.Error("with the Delete policy the volume must be owned by the workspace")
	}
	eventually(t, "phase pending", phaseIs(t, e, "alpha", v1alpha1.PhasePending))

	runPod(t, e, "alpha-pod")
	eventually(t, "phase building", phaseIs(t, e, "alpha", v1alpha1.PhaseBuilding))
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	eventually(t, "phase ready", phaseIs(t, e, "alpha", v1alpha1.PhaseReady))

	ws = getWS(t, e, "alpha")
	st := ws.Status
	if st.ObservedGeneration != ws.Generation || st.PodName != "alpha-pod" || st.Image != debian {
		t.Errorf("status = %+v", st)
	}
	if st.Stages.Scheduled == nil || st.Stages.AgentReady == nil || st.Stages.Initialized == nil || st.Stages.Ready == nil {
		t.Errorf("stage times missing: %+v", st.Stages)
	}
	for _, c := range st.Conditions {
		if c.ObservedGeneration != ws.Generation {
			t.Errorf("condition %s observed generation %d, want %d", c.Type, c.ObservedGeneration, ws.Generation)
		}
	}
	eventually(t, "events for the transitions", func() (bool, string) {
		var evs corev1.EventList
		_ = e.client.List(ctx, &evs, client.InNamespace(e.ns))
		var reasons []string
		for _, ev := range evs.Items {
			if ev.InvolvedObject.UID == ws.UID {
				reasons = append(reasons, ev.Reason)
			}
		}
		all := strings.Join(reasons, ",")
		return strings.Contains(all, "Creating") && strings.Contains(all, "Phase"), all
	})
}

func TestInitScriptFailure(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "beta"))
	eventually(t, "the pod", podExists(e, "beta-pod"))
	code := 7
	e.agent.set(agentapi.InitStatus{State: agentapi.InitFailed, ExitCode: &code})
	runPod(t, e, "beta-pod")
	eventually(t, "phase error", phaseIs(t, e, "beta", v1alpha1.PhaseError))
	ws := getWS(t, e, "beta")
	c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionInitialized)
	if c == nil || c.Reason != v1alpha1.ReasonInitScriptFailed || !v1alpha1.UserFixable(c.Reason) {
		t.Errorf("Initialized = %+v, want InitScriptFailed", c)
	}
	if ws.Status.InitExitCode == nil || *ws.Status.InitExitCode != 7 || !strings.Contains(ws.Status.LastError, "exit code 7") {
		t.Errorf("exit code %v, last error %q", ws.Status.InitExitCode, ws.Status.LastError)
	}
}

func TestImagePullFailure(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "gamma", func(s *v1alpha1.WorkspaceSpec) { s.Image = "localhost/nope:missing" }))
	eventually(t, "the pod", podExists(e, "gamma-pod"))
	pod, _ := getPod(e, "gamma-pod")
	pod.Status.Phase = corev1.PodPending
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "workspace", Image: "localhost/nope:missing",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image is not present"}}}}
	if err := e.client.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "phase error", phaseIs(t, e, "gamma", v1alpha1.PhaseError))
	ws := getWS(t, e, "gamma")
	if c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Reason != v1alpha1.ReasonImagePullFailed {
		t.Errorf("Ready = %+v, want ImagePullFailed", c)
	}
	if !strings.Contains(ws.Status.LastError, "localhost/nope:missing") {
		t.Errorf("last error %q does not name the image", ws.Status.LastError)
	}
}

func TestRebuildAndDistroChangeReplaceThePod(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "delta"))
	eventually(t, "the pod", podExists(e, "delta-pod"))
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	runPod(t, e, "delta-pod")
	eventually(t, "ready", phaseIs(t, e, "delta", v1alpha1.PhaseReady))
	first, _ := getPod(e, "delta-pod")

	update(t, e, "delta", func(ws *v1alpha1.Workspace) { ws.Spec.Rebuild = 1 })
	eventually(t, "a new pod", func() (bool, string) {
		p, err := getPod(e, "delta-pod")
		return err == nil && p.UID != first.UID, fmt.Sprint(err)
	})
	eventually(t, "the rebuild recorded", func() (bool, string) {
		ws := getWS(t, e, "delta")
		return ws.Status.ObservedRebuild == 1 && ws.Status.Phase == v1alpha1.PhasePending, string(ws.Status.Phase)
	})

	second, _ := getPod(e, "delta-pod")
	update(t, e, "delta", func(ws *v1alpha1.Workspace) { ws.Spec.Distro = v1alpha1.DistroUbuntuNoble })
	eventually(t, "a pod with the new distro's image", func() (bool, string) {
		p, err := getPod(e, "delta-pod")
		if err != nil {
			return false, err.Error()
		}
		return p.UID != second.UID && p.Spec.Containers[0].Image == debian+"-as-noble", p.Spec.Containers[0].Image
	})
}

func TestSuspendKeepsTheVolume(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "eps"))
	eventually(t, "the pod", podExists(e, "eps-pod"))
	update(t, e, "eps", func(ws *v1alpha1.Workspace) { ws.Spec.Suspend = true })
	eventually(t, "the pod gone", func() (bool, string) {
		_, err := getPod(e, "eps-pod")
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	eventually(t, "phase stopped", phaseIs(t, e, "eps", v1alpha1.PhaseStopped))
	pvc := &corev1.PersistentVolumeClaim{}
	if err := e.client.Get(context.Background(), e.key("eps-data"), pvc); err != nil {
		t.Errorf("the volume went with the suspension: %v", err)
	}
	update(t, e, "eps", func(ws *v1alpha1.Workspace) { ws.Spec.Suspend = false })
	eventually(t, "a pod again", podExists(e, "eps-pod"))
	eventually(t, "phase pending", phaseIs(t, e, "eps", v1alpha1.PhasePending))
}

func TestRestartCreatesNoDuplicates(t *testing.T) {
	e := startOperator(t, localImages)
	for i := range 5 {
		create(t, e, newWS(e.ns, fmt.Sprintf("dup%d", i)))
	}
	for i := range 5 {
		eventually(t, "the pods", podExists(e, fmt.Sprintf("dup%d-pod", i)))
	}
	e.stop()
	before := map[string]string{}
	var pods corev1.PodList
	_ = e.client.List(context.Background(), &pods, client.InNamespace(e.ns))
	for _, p := range pods.Items {
		before[p.Name] = string(p.UID)
	}
	restarted := []*readCounter{
		e.start(),
		e.start(), // a second replica, as during a rolling update without leader election
	}
	// Each restarted manager finds the workspaces in its first list and
	// reconciles every one; once each has finished a reconcile of each,
	// any duplicate it would make is there to be seen.
	for i, r := range restarted {
		for j := range 5 {
			ws := fmt.Sprintf("dup%d", j)
			testwait.True(t, settle, fmt.Sprintf("restarted manager %d reconciles %s", i, ws), func() bool { return r.reconciled(ws) })
		}
	}
	pods = corev1.PodList{}
	_ = e.client.List(context.Background(), &pods, client.InNamespace(e.ns))
	if len(pods.Items) != len(before) {
		t.Fatalf("pods after restart: %d, before: %d", len(pods.Items), len(before))
	}
	for _, p := range pods.Items {
		if before[p.Name] != string(p.UID) {
			t.Errorf("pod %s was replaced on restart", p.Name)
		}
	}
}

func TestStartTimeout(t *testing.T) {
	e := startOperator(t, map[string]string{"SORTIE_WORKSPACE_START_TIMEOUT": "30s", "SORTIE_DISTRO_IMAGES": localImages["SORTIE_DISTRO_IMAGES"]})
	create(t, e, newWS(e.ns, "zeta"))
	eventually(t, "the pod", podExists(e, "zeta-pod"))
	eventually(t, "phase pending", phaseIs(t, e, "zeta", v1alpha1.PhasePending))
	e.clock.Advance(31 * time.Second)
	eventually(t, "phase error", phaseIs(t, e, "zeta", v1alpha1.PhaseError))
	c := meta.FindStatusCondition(getWS(t, e, "zeta").Status.Conditions, v1alpha1.ConditionReady)
	if c.Reason != v1alpha1.ReasonStartTimeout || v1alpha1.UserFixable(c.Reason) {
		t.Errorf("Ready = %+v, want StartTimeout (an infrastructure failure)", c)
	}
}

func TestUnschedulable(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "eta"))
	eventually(t, "the pod", podExists(e, "eta-pod"))
	pod, _ := getPod(e, "eta-pod")
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes: insufficient memory"}}
	if err := e.client.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "still pending while the scheduler retries", phaseIs(t, e, "eta", v1alpha1.PhasePending))
	e.clock.Advance(unschedulableAfter + time.Second)
	update(t, e, "eta", func(ws *v1alpha1.Workspace) { ws.Annotations = map[string]string{"poke": "1"} })
	eventually(t, "phase error", phaseIs(t, e, "eta", v1alpha1.PhaseError))
	if ws := getWS(t, e, "eta"); !strings.Contains(ws.Status.LastError, "insufficient memory") {
		t.Errorf("last error %q does not carry the scheduler's reason", ws.Status.LastError)
	}
}

func TestRetainPolicy(t *testing.T) {
	e := startOperator(t, localImages)
	create(t, e, newWS(e.ns, "keep", func(s *v1alpha1.WorkspaceSpec) {
		s.Storage = &v1alpha1.WorkspaceStorage{RetainPolicy: v1alpha1.RetainRetain}
	}))
	pvc := &corev1.PersistentVolumeClaim{}
	eventually(t, "the volume", func() (bool, string) {
		err := e.client.Get(context.Background(), e.key("keep-data"), pvc)
		return err == nil, fmt.Sprint(err)
	})
	if metav1.GetControllerOf(pvc) != nil {
		t.Error("a retained volume must not be owned by the workspace, or deleting it would delete the volume")
	}
	if got := pvc.Spec.Resources.Requests.Storage().String(); got != "10Gi" {
		t.Errorf("volume size %s, want the 10Gi default", got)
	}
}
