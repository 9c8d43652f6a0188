package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// Host workspaces are directories in a host-runtime Pod: the default
// distro image with the agent as PID 1 and one volume at
// v1alpha1.HostRoot. In multi-user mode every owner has a runtime of their
// own (sortie-host-runtime-<owner key>), so no process, file or
// environment of one user is visible from another's; unowned host
// workspaces, and every host workspace in single-user mode, share
// sortie-host-runtime. A runtime belongs to no Workspace — it outlives
// every host workspace, and deleting one never touches the others — so
// the reconcile of any of its host workspaces recreates whatever of it is
// missing.
const (
	// HostRuntimeName is the shared runtime's name; its Secret is -agent,
	// its volume -data and its Pod -pod. An owner's runtime adds -<key>.
	HostRuntimeName = "sortie-host-runtime"
	// ComponentHostRuntime is the runtime's app.kubernetes.io/component.
	ComponentHostRuntime = "host-runtime"
)

// HostRuntimeOf names the runtime a host workspace lives in.
func HostRuntimeOf(ws *v1alpha1.Workspace, multiUser bool) string {
	if multiUser && ws.Spec.Owner != "" {
		return HostRuntimeName + "-" + v1alpha1.OwnerKey(ws.Spec.Owner)
	}
	return HostRuntimeName
}

// runtimeIdentity is a stand-in Workspace that gives a runtime's objects
// their names and labels through the same functions as a container
// workspace's. It is never stored.
func runtimeIdentity(namespace, name, owner string) *v1alpha1.Workspace {
	return &v1alpha1.Workspace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       v1alpha1.WorkspaceSpec{DisplayName: "host runtime", Type: v1alpha1.TypeHost, Owner: owner},
	}
}

// AgentSecretName is the Secret holding the token of the agent that
// serves ws: its own for a container, its runtime's for a host workspace.
func AgentSecretName(ws *v1alpha1.Workspace, multiUser bool) string {
	if ws.Spec.Type == v1alpha1.TypeContainer {
		return secretName(ws)
	}
	return HostRuntimeOf(ws, multiUser) + "-agent"
}

// AgentPodName is the Pod of the agent that serves ws.
func AgentPodName(ws *v1alpha1.Workspace, multiUser bool) string {
	if ws.Spec.Type == v1alpha1.TypeContainer {
		return podName(ws)
	}
	return HostRuntimeOf(ws, multiUser) + "-pod"
}

func isRuntimePod(o client.Object) bool {
	return o.GetLabels()[LabelComponent] == ComponentHostRuntime && strings.HasPrefix(o.GetName(), HostRuntimeName)
}

// runtimeIndex indexes host workspaces by the runtime they live in, so an
// event on a runtime's Pod reaches its workspaces without a list of all.
const runtimeIndex = "sortie.dev/host-runtime"

// indexRuntimes registers runtimeIndex; call it before the manager starts.
func (r *WorkspaceReconciler) indexRuntimes(ctx context.Context, indexer client.FieldIndexer) error {
	multi := r.Config.MultiUser()
	return indexer.IndexField(ctx, &v1alpha1.Workspace{}, runtimeIndex, func(o client.Object) []string {
		ws := o.(*v1alpha1.Workspace)
		if ws.Spec.Type == v1alpha1.TypeContainer {
			return nil
		}
		return []string{HostRuntimeOf(ws, multi)}
	})
}

// hostWorkspacesOf maps an event on a runtime Pod to the host workspaces
// that live in it (through the index: one owner's, in multi-user mode).
func (r *WorkspaceReconciler) hostWorkspacesOf(ctx context.Context, o client.Object) []reconcile.Request {
	var wl v1alpha1.WorkspaceList
	rt := strings.TrimSuffix(o.GetName(), "-pod")
	if err := r.Client.List(ctx, &wl, client.InNamespace(o.GetNamespace()), client.MatchingFields{runtimeIndex: rt}); err != nil {
		log.FromContext(ctx).Error(err, "list host workspaces", "runtime", rt)
		return nil
	}
	out := make([]reconcile.Request, 0, len(wl.Items))
	for i := range wl.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&wl.Items[i])})
	}
	return out
}

// ensureHostRuntime keeps the runtime's Secret, volume and Pod. It returns
// the Pod once one matching the current configuration exists, or nil
// while it is being (re)created.
func (r *WorkspaceReconciler) ensureHostRuntime(ctx context.Context, ws *v1alpha1.Workspace) (*corev1.Pod, string, error) {
	owner := ""
	if r.Config.MultiUser() {
		owner = ws.Spec.Owner
	}
	rt := runtimeIdentity(ws.Namespace, HostRuntimeOf(ws, r.Config.MultiUser()), owner)
	token, err := r.ensureSecret(ctx, rt, nil)
	if err != nil {
		return nil, "", fmt.Errorf("host runtime: %w", err)
	}
	if err := r.ensurePVC(ctx, rt, nil, r.Config.HostStorage); err != nil {
		return nil, "", fmt.Errorf("host runtime: %w", err)
	}
	image := r.Config.DistroImages[r.Config.DefaultDistro]
	// The runtime gets the default resources and RuntimeClass: it is the
	// owner's host workspaces' one container.
	res, err := r.Config.Workload.Resources(nil)
	if err != nil {
		return nil, "", fmt.Errorf("host runtime resources: %w", err)
	}
	want := desiredPod(rt, podInputs{Image: image, AgentImage: r.Config.AgentImage, PullPolicy: r.Config.ImagePullPolicy, Mount: v1alpha1.HostRoot,
		Resources: res, Capabilities: r.Config.Workload.Capabilities, RuntimeClass: r.Config.Workload.RuntimeClass}, r.Config.AgentPort)
	want.Labels[LabelComponent] = ComponentHostRuntime

	pod := &corev1.Pod{}
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), pod)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, "", fmt.Errorf("create host runtime pod: %w", err)
		}
		log.FromContext(ctx).Info("created a host runtime pod", "pod", want.Name, "image", image, "owner", owner)
		return nil, token, nil
	case err != nil:
		return nil, "", fmt.Errorf("get host runtime pod: %w", err)
	case !pod.DeletionTimestamp.IsZero():
		return nil, token, nil
	case pod.Annotations[AnnotationHash] != want.Annotations[AnnotationHash]:
		// A new agent image or default distro: every host workspace moves
		// to the new runtime together.
		if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return nil, "", fmt.Errorf("replace host runtime pod: %w", err)
		}
		log.FromContext(ctx).Info("replacing the host runtime pod: its configuration changed", "pod", pod.Name)
		return nil, token, nil
	}
	return pod, token, nil
}

// reconcileHost makes a host workspace's directory in the runtime.
func (r *WorkspaceReconciler) reconcileHost(ctx context.Context, ws *v1alpha1.Workspace, o *observation) (ctrl.Result, error) {
	gen := ws.Generation
	if !v1alpha1.InHostRoot(ws.Spec.Path) {
		o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec,
			fmt.Sprintf("the path of a host workspace must lie inside %s, not %q", v1alpha1.HostRoot, ws.Spec.Path))
		return ctrl.Result{}, nil
	}
	if ws.Spec.Suspend {
		suspended(o, gen)
		return ctrl.Result{}, nil
	}
	pod, token, err := r.ensureHostRuntime(ctx, ws)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		o.starting(gen, "the host runtime is starting")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	ws.Status.PodName, ws.Status.Image = pod.Name, pod.Spec.Containers[0].Image
	if s := ws.Status.Stages.Scheduled; s != nil && s.Time.Before(pod.CreationTimestamp.Time) {
		ws.Status.Stages = v1alpha1.StageTimes{} // they belong to an earlier runtime
	}
	now := r.now()
	var retry time.Duration
	if observePod(o, gen, pod, now, unschedulableAfter) {
		endpoint := fmt.Sprintf("http://%s:%d", pod.Status.PodIP, r.Config.AgentPort)
		_, err := r.Prober.InitStatus(ctx, endpoint, token)
		observeAgent(o, gen, err)
		if err == nil {
			if err := r.Prober.EnsureDir(ctx, endpoint, token, ws.Spec.Path); err != nil {
				o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionFalse, v1alpha1.ReasonCreating, "creating the directory: "+err.Error())
			} else {
				o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, "the directory "+ws.Spec.Path+" exists")
				retry = r.syncSkills(ctx, ws, agentapi.NewClient(endpoint, token, nil), ws.Spec.Path, o)
			}
		}
	}
	// A host workspace made long after the runtime started has its own
	// time to get ready.
	since := pod.CreationTimestamp.Time
	if ws.CreationTimestamp.After(since) {
		since = ws.CreationTimestamp.Time
	}
	return sooner(r.decideReady(ws, since, o, now), retry), nil
}
