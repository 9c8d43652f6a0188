package controller

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func hostWS(ns, name, path string) *v1alpha1.Workspace {
	return &v1alpha1.Workspace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.WorkspaceSpec{DisplayName: name, Type: v1alpha1.TypeHost, Path: path},
	}
}

const runtimePod = HostRuntimeName + "-pod"

func TestHostWorkspacesShareOneRuntime(t *testing.T) {
	e := startOperator(t, localImages)
	ctx := context.Background()
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	create(t, e, hostWS(e.ns, "host", v1alpha1.HostRoot))
	create(t, e, hostWS(e.ns, "proj", "/workspaces/proj"))

	eventually(t, "the runtime pod", podExists(e, runtimePod))
	pod, _ := getPod(e, runtimePod)
	if owner := metav1.GetControllerOf(pod); owner != nil {
		t.Errorf("the runtime pod is owned by %s; it must outlive every host workspace", owner.Name)
	}
	if pod.Labels[LabelComponent] != ComponentHostRuntime {
		t.Errorf("runtime pod labels = %v", pod.Labels)
	}
	main := pod.Spec.Containers[0]
	if main.Image != debian || main.VolumeMounts[2].MountPath != v1alpha1.HostRoot || main.WorkingDir != v1alpha1.HostRoot {
		t.Errorf("runtime container: image %s, mounts %+v, workdir %s", main.Image, main.VolumeMounts, main.WorkingDir)
	}
	for _, name := range []string{HostRuntimeName + "-agent", HostRuntimeName + "-data"} {
		var obj client.Object = &corev1.Secret{}
		if name == HostRuntimeName+"-data" {
			obj = &corev1.PersistentVolumeClaim{}
		}
		if err := e.client.Get(ctx, e.key(name), obj); err != nil {
			t.Fatalf("runtime object %s: %v", name, err)
		}
		if metav1.GetControllerOf(obj) != nil {
			t.Errorf("%s is owned; the runtime belongs to no workspace", name)
		}
	}
	eventually(t, "host pending", phaseIs(t, e, "proj", v1alpha1.PhasePending))

	runPod(t, e, runtimePod)
	eventually(t, "host ready", phaseIs(t, e, "host", v1alpha1.PhaseReady))
	eventually(t, "proj ready", phaseIs(t, e, "proj", v1alpha1.PhaseReady))
	if !e.agent.made("/workspaces/proj") || !e.agent.made(v1alpha1.HostRoot) {
		t.Error("the directories of the host workspaces were not made")
	}
	if ws := getWS(t, e, "proj"); ws.Status.PodName != runtimePod || ws.Status.Stages.Ready == nil {
		t.Errorf("status pod %q stages %+v", ws.Status.PodName, ws.Status.Stages)
	}

	// Deleting a host workspace leaves the runtime (and the others) alone.
	if err := e.client.Delete(ctx, hostWS(e.ns, "proj", "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "proj gone", func() (bool, string) {
		err := e.client.Get(ctx, e.key("proj"), &v1alpha1.Workspace{})
		return err != nil, "still there"
	})
	if p, err := getPod(e, runtimePod); err != nil || !p.DeletionTimestamp.IsZero() {
		t.Fatalf("the runtime pod went with a host workspace: %v", err)
	}

	// A runtime that disappears comes back, and its workspaces follow it.
	if err := e.client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "host no longer ready", func() (bool, string) {
		ws := getWS(t, e, "host")
		return ws.Status.Phase != v1alpha1.PhaseReady, string(ws.Status.Phase)
	})
	eventually(t, "a new runtime pod", func() (bool, string) {
		p, err := getPod(e, runtimePod)
		return err == nil && p.UID != pod.UID, "old or none"
	})
	runPod(t, e, runtimePod)
	eventually(t, "host ready again", phaseIs(t, e, "host", v1alpha1.PhaseReady))
}

func TestHostWorkspaceFailures(t *testing.T) {
	e := startOperator(t, localImages)
	e.agent.set(agentapi.InitStatus{State: agentapi.InitSucceeded})
	create(t, e, hostWS(e.ns, "outside", "/etc"))
	eventually(t, "outside fails", phaseIs(t, e, "outside", v1alpha1.PhaseError))
	if ws := getWS(t, e, "outside"); ws.Status.LastError == "" {
		t.Error("no lastError for a path outside the host root")
	}

	e.agent.failDirs(errors.New("read-only file system"))
	create(t, e, hostWS(e.ns, "ro", "/workspaces/ro"))
	eventually(t, "the runtime pod", podExists(e, runtimePod))
	runPod(t, e, runtimePod)
	eventually(t, "ro building while mkdir fails", phaseIs(t, e, "ro", v1alpha1.PhaseBuilding))
	e.agent.failDirs(nil)
	eventually(t, "ro ready once mkdir works", phaseIs(t, e, "ro", v1alpha1.PhaseReady))

	update(t, e, "ro", func(ws *v1alpha1.Workspace) { ws.Spec.Suspend = true })
	eventually(t, "ro stopped", phaseIs(t, e, "ro", v1alpha1.PhaseStopped))
	if _, err := getPod(e, runtimePod); err != nil {
		t.Errorf("suspending a host workspace touched the runtime: %v", err)
	}
}
