// Package controller reconciles Workspace resources into the objects that
// make a workspace real: an agent-token Secret, a volume and one Pod, and
// reports what it sees as conditions and a phase.
package controller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/config"
)

// EventRecorder records Kubernetes Events (k8s.io/client-go/tools/events).
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// The operator's permissions, all in its one namespace; controller-gen
// writes them to config/rbac/role.yaml (make generate). The REST facade
// needs no more than the controller: it writes Workspaces and reads Pods
// and Secrets from the same cache.
//
// +kubebuilder:rbac:groups=sortie.dev,resources=workspaces,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=sortie.dev,resources=workspaces/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch

// WorkspaceReconciler makes container Workspaces real.
type WorkspaceReconciler struct {
	Client client.Client
	Scheme *runtime.Scheme
	Config *config.Config
	Prober Prober
	// Skills syncs library items into workspaces; nil or unconfigured: no library.
	Skills   SkillSyncer
	Recorder EventRecorder
	Now      func() time.Time
	// StartSeconds observes create → ready of each workspace start.
	StartSeconds prometheus.Observer
}

var _ reconcile.Reconciler = (*WorkspaceReconciler)(nil)

// How long a Pod may stay unschedulable before the workspace fails: the
// scheduler retries, and a node may be on its way.
const unschedulableAfter = 60 * time.Second

// SetupWithManager registers the controller: Workspaces, the Pods, PVCs
// and Secrets they own, and the host runtime's Pod.
func (r *WorkspaceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.indexRuntimes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("host runtime index: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Workspace{}).
		Owns(&corev1.Pod{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.hostWorkspacesOf),
			builder.WithPredicates(predicate.NewPredicateFuncs(isRuntimePod))).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.allWorkspacesOf),
			builder.WithPredicates(predicate.NewPredicateFuncs(r.isRevisionConfigMap))).
		Named("workspace").
		Complete(r)
}

// Reconcile drives one Workspace a step towards its spec.
func (r *WorkspaceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ws := &v1alpha1.Workspace{}
	if err := r.Client.Get(ctx, req.NamespacedName, ws); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ws.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owned objects go with it (garbage collector)
	}
	if err := r.ensureOwnerLabel(ctx, ws); err != nil {
		return ctrl.Result{}, err
	}
	original := ws.DeepCopy()
	o := &observation{conds: append([]metav1.Condition(nil), ws.Status.Conditions...)}

	var result ctrl.Result
	var err error
	if ws.Spec.Type == v1alpha1.TypeContainer {
		result, err = r.reconcileContainer(ctx, ws, o)
	} else {
		result, err = r.reconcileHost(ctx, ws, o)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.writeStatus(ctx, ws, original, o); err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// ensureOwnerLabel keeps the sortie.dev/owner label equal to the key of
// spec.owner (a workspace made with kubectl may lack it, or carry a wrong
// one). The label is for selection; authorisation reads spec.owner.
func (r *WorkspaceReconciler) ensureOwnerLabel(ctx context.Context, ws *v1alpha1.Workspace) error {
	want := v1alpha1.OwnerKey(ws.Spec.Owner)
	got, has := ws.Labels[v1alpha1.LabelOwner]
	if got == want && (has || want == "") {
		return nil
	}
	patch := client.MergeFrom(ws.DeepCopy())
	if want == "" {
		delete(ws.Labels, v1alpha1.LabelOwner)
	} else {
		if ws.Labels == nil {
			ws.Labels = map[string]string{}
		}
		ws.Labels[v1alpha1.LabelOwner] = want
	}
	if err := r.Client.Patch(ctx, ws, patch); err != nil {
		return fmt.Errorf("label the owner: %w", err)
	}
	return nil
}

// envSecretReady checks the Secret named by spec.envSecretRef before a Pod
// that reads it is made: "" when there is none or it is in place, else
// why the Pod must wait (missing) or cannot be made (held by another
// object: failed).
func (r *WorkspaceReconciler) envSecretReady(ctx context.Context, ws *v1alpha1.Workspace) (wait string, failed string, err error) {
	if ws.Spec.EnvSecretRef == "" {
		return "", "", nil
	}
	sec := &corev1.Secret{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Spec.EnvSecretRef}, sec)
	switch {
	case apierrors.IsNotFound(err):
		// The operator's cache holds only Secrets labelled with their
		// workspace: one made without the label is never seen.
		return "waiting for the Secret " + ws.Spec.EnvSecretRef + " with the workspace's secret environment (labelled " +
			LabelWorkspace + "=" + ws.Name + ")", "", nil
	case err != nil:
		return "", "", fmt.Errorf("get env secret: %w", err)
	}
	if c := metav1.GetControllerOf(sec); c != nil && c.UID != ws.UID {
		return "", fmt.Sprintf("the Secret %s belongs to %s %s, not to this workspace", sec.Name, c.Kind, c.Name), nil
	}
	return "", "", nil
}

// reconcileContainer gives a container workspace its Secret, volume and Pod.
func (r *WorkspaceReconciler) reconcileContainer(ctx context.Context, ws *v1alpha1.Workspace, o *observation) (ctrl.Result, error) {
	token, err := r.ensureSecret(ctx, ws, ws)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensurePVC(ctx, ws, ws, r.Config.DefaultStorage); err != nil {
		return ctrl.Result{}, err
	}
	return r.reconcilePod(ctx, ws, token, o)
}

func (r *WorkspaceReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// ensureSecret creates the agent-token Secret once and returns the token.
// A nil owner leaves the Secret unowned (the host runtime's).
func (r *WorkspaceReconciler) ensureSecret(ctx context.Context, ws, owner *v1alpha1.Workspace) (string, error) {
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: secretName(ws)}, sec)
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("get agent secret: %w", err)
	}
	if apierrors.IsNotFound(err) {
		token, err := newToken()
		if err != nil {
			return "", err
		}
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName(ws), Namespace: ws.Namespace, Labels: labels(ws)},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{secretTokenKey: []byte(token), secretInitKey: []byte(ws.Spec.InitScript)},
		}
		if owner != nil {
			if err := controllerutil.SetControllerReference(owner, sec, r.Scheme); err != nil {
				return "", err
			}
		}
		if err := r.Client.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create agent secret: %w", err)
		}
		return token, nil
	}
	// The init script lives in the Secret; keep it current (a new script
	// also changes the Pod hash, so the new Pod reads the new one).
	if string(sec.Data[secretInitKey]) != ws.Spec.InitScript {
		sec.Data[secretInitKey] = []byte(ws.Spec.InitScript)
		if err := r.Client.Update(ctx, sec); err != nil {
			return "", fmt.Errorf("update agent secret: %w", err)
		}
	}
	return string(sec.Data[secretTokenKey]), nil
}

// ensurePVC creates the volume once. It is owned by owner unless that is
// nil or the workspace asks to retain its volume.
func (r *WorkspaceReconciler) ensurePVC(ctx context.Context, ws, owner *v1alpha1.Workspace, defaultSize string) error {
	pvc := &corev1.PersistentVolumeClaim{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: pvcName(ws)}, pvc)
	if err == nil || !apierrors.IsNotFound(err) {
		return client.IgnoreNotFound(err)
	}
	size, err := resource.ParseQuantity(defaultSize)
	if err != nil {
		return fmt.Errorf("default storage size: %w", err)
	}
	pvc = desiredPVC(ws, size)
	if owner != nil && !retain(ws) {
		if err := controllerutil.SetControllerReference(owner, pvc, r.Scheme); err != nil {
			return err
		}
	}
	if err := r.Client.Create(ctx, pvc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create volume claim: %w", err)
	}
	return nil
}

// reconcilePod keeps exactly one Pod matching the spec and observes it.
func (r *WorkspaceReconciler) reconcilePod(ctx context.Context, ws *v1alpha1.Workspace, token string, o *observation) (ctrl.Result, error) {
	gen := ws.Generation
	pod := &corev1.Pod{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: podName(ws)}, pod)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("get pod: %w", err)
	}
	exists := err == nil

	if ws.Spec.Suspend {
		if exists && pod.DeletionTimestamp.IsZero() {
			if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("delete pod to suspend: %w", err)
			}
		}
		suspended(o, gen)
		return ctrl.Result{}, nil
	}

	image, err := r.Config.ImageFor(&ws.Spec)
	if err != nil {
		o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	res, class, err := r.workload(ws)
	if err != nil {
		// A spec made with kubectl past the REST API's checks (and the
		// chart's admission policy): no Pod, and the user is told why.
		o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	in := podInputs{
		Image: image, AgentImage: r.Config.AgentImage, Env: ws.Spec.EnvVars, InitScript: ws.Spec.InitScript,
		Resources: res, NodeSelector: ws.Spec.NodeSelector, Tolerations: ws.Spec.Tolerations,
		Rebuild: ws.Spec.Rebuild, PullPolicy: r.Config.ImagePullPolicy, EnvSecret: ws.Spec.EnvSecretRef,
		Capabilities: r.Config.Workload.Capabilities, RuntimeClass: class,
	}
	want := desiredPod(ws, in, r.Config.AgentPort)

	switch {
	case exists && !pod.DeletionTimestamp.IsZero():
		// The old Pod is going; never two. Until the new one runs, the
		// workspace is starting, not ready.
		o.starting(gen, "the previous pod is stopping")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case exists && pod.Annotations[AnnotationHash] != want.Annotations[AnnotationHash]:
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, "Recreating", "Rebuild", "the spec changed or a rebuild was asked for: replacing pod %s", pod.Name)
		if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("delete outdated pod: %w", err)
		}
		o.starting(gen, "replacing the pod")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case !exists:
		wait, failed, err := r.envSecretReady(ctx, ws)
		switch {
		case err != nil:
			return ctrl.Result{}, err
		case failed != "":
			o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, failed)
			return ctrl.Result{}, nil
		case wait != "":
			o.starting(gen, wait)
			return r.decideReady(ws, ws.CreationTimestamp.Time, o, r.now()), nil
		}
		if err := controllerutil.SetControllerReference(ws, want, r.Scheme); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("create pod: %w", err)
		}
		// A new start: earlier conditions and stage times no longer apply.
		o.starting(gen, "the pod is being created")
		ws.Status.Stages = v1alpha1.StageTimes{}
		ws.Status.InitExitCode = nil
		ws.Status.ObservedRebuild = ws.Spec.Rebuild
		ws.Status.PodName, ws.Status.Image = want.Name, image
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, "Creating", "CreatePod", "creating pod %s with image %s", want.Name, image)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}

	ws.Status.PodName, ws.Status.Image = pod.Name, image
	if n, err := strconv.ParseInt(pod.Annotations[AnnotationRebuild], 10, 64); err == nil {
		ws.Status.ObservedRebuild = n
	}
	if s := ws.Status.Stages.Scheduled; s != nil && s.Time.Before(pod.CreationTimestamp.Time) {
		ws.Status.Stages = v1alpha1.StageTimes{} // they belong to an earlier pod
		ws.Status.InitExitCode = nil
	}
	now := r.now()
	var retry time.Duration
	if observePod(o, gen, pod, now, unschedulableAfter) {
		endpoint := fmt.Sprintf("http://%s:%d", pod.Status.PodIP, r.Config.AgentPort)
		st, err := r.Prober.InitStatus(ctx, endpoint, token)
		if err != nil {
			log.FromContext(ctx).V(1).Info("agent not answering yet", "pod", pod.Name, "error", err.Error())
		}
		observeInit(o, gen, st, err)
		if o.initExit != nil {
			ws.Status.InitExitCode = o.initExit
		}
		if err == nil {
			retry = r.syncSkills(ctx, ws, agentapi.NewClient(endpoint, token, nil), workspaceMount, o)
		}
	}
	return sooner(r.decideReady(ws, pod.CreationTimestamp.Time, o, now), retry), nil
}

// workload resolves a container workspace's resources and RuntimeClass
// against the operator's defaults, maxima and allowed classes.
func (r *WorkspaceReconciler) workload(ws *v1alpha1.Workspace) (corev1.ResourceRequirements, string, error) {
	w := &r.Config.Workload
	res, err := w.Resources(ws.Spec.Resources)
	if err != nil {
		return res, "", err
	}
	class, err := w.RuntimeClassFor(ws.Spec.RuntimeClassName)
	return res, class, err
}

// decideReady sets Ready from the stages and says when to look again; the
// workspace fails when it is not ready StartTimeout after since.
func (r *WorkspaceReconciler) decideReady(ws *v1alpha1.Workspace, since time.Time, o *observation, now time.Time) ctrl.Result {
	gen := ws.Generation
	all := true
	for _, t := range []string{v1alpha1.ConditionScheduled, v1alpha1.ConditionAgentReady, v1alpha1.ConditionInitialized} {
		c := meta.FindStatusCondition(o.conds, t)
		if c == nil || c.Status != metav1.ConditionTrue {
			all = false
		}
		if c != nil && c.Status == metav1.ConditionFalse && v1alpha1.IsFailure(c.Reason) {
			o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, c.Reason, c.Message)
			return ctrl.Result{} // a failure: wait for a spec change or a pod event
		}
	}
	if all {
		o.set(gen, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, "the workspace is ready")
		return ctrl.Result{RequeueAfter: 5 * time.Minute} // notice a dead agent eventually
	}
	deadline := since.Add(r.Config.StartTimeout)
	if now.After(deadline) {
		o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonStartTimeout,
			fmt.Sprintf("the workspace was not ready %s after it started", r.Config.StartTimeout))
		return ctrl.Result{}
	}
	o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCreating, "the workspace is starting")
	return ctrl.Result{RequeueAfter: min(2*time.Second, deadline.Sub(now)+time.Millisecond)}
}

// writeStatus stores what was observed, with the phase, stage times and
// an Event for every condition that changed.
func (r *WorkspaceReconciler) writeStatus(ctx context.Context, ws, original *v1alpha1.Workspace, o *observation) error {
	before := &original.Status
	now := metav1.NewTime(r.now())
	st := &ws.Status
	st.Conditions = o.conds
	st.ObservedGeneration = ws.Generation
	st.Phase = v1alpha1.ComputePhase(ws.Spec.Suspend, st.Conditions)
	stamp := func(t string, at **metav1.Time) {
		if meta.IsStatusConditionTrue(st.Conditions, t) && *at == nil {
			*at = &now
		}
	}
	stamp(v1alpha1.ConditionScheduled, &st.Stages.Scheduled)
	stamp(v1alpha1.ConditionAgentReady, &st.Stages.AgentReady)
	stamp(v1alpha1.ConditionInitialized, &st.Stages.Initialized)
	stamp(v1alpha1.ConditionReady, &st.Stages.Ready)
	if o.failure != "" {
		st.LastError = o.failure
	}
	for _, c := range st.Conditions {
		old := meta.FindStatusCondition(before.Conditions, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason {
			continue
		}
		kind := corev1.EventTypeNormal
		if c.Status == metav1.ConditionFalse && v1alpha1.IsFailure(c.Reason) {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ws, nil, kind, c.Reason, c.Type, "%s=%s: %s", c.Type, c.Status, c.Message)
	}
	if before.Phase != st.Phase {
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, "Phase", "Phase", "phase %s -> %s", orNone(string(before.Phase)), st.Phase)
		if st.Phase == v1alpha1.PhaseReady && r.StartSeconds != nil && ws.Status.PodName != "" && st.Stages.Ready != nil {
			pod := &corev1.Pod{}
			if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Status.PodName}, pod); err == nil {
				r.StartSeconds.Observe(st.Stages.Ready.Sub(pod.CreationTimestamp.Time).Seconds())
			}
		}
	}
	if apiequality.Semantic.DeepEqual(before, st) {
		return nil
	}
	// A merge patch carries no resourceVersion: the cache may lag behind our
	// own last write, and a conflict would lose what was just observed.
	if err := r.Client.Status().Patch(ctx, ws, client.MergeFrom(original)); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

// sooner adds a retry to a result, keeping the earlier of the two.
func sooner(res ctrl.Result, after time.Duration) ctrl.Result {
	if after > 0 && (res.RequeueAfter == 0 || after < res.RequeueAfter) {
		res.RequeueAfter = after
	}
	return res
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
