package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/library"
)

// SkillSyncer writes library items into a workspace (library.Client).
type SkillSyncer interface {
	Configured() bool
	Sync(ctx context.Context, t library.Target) (library.Result, error)
}

// The library writes its revision into this ConfigMap's "revision" key.
const revisionKey = "revision"

// How soon a failed sync is tried again.
const syncRetry = 30 * time.Second

func (r *WorkspaceReconciler) isRevisionConfigMap(o client.Object) bool {
	return r.Config.LibraryConfigMap != "" && o.GetName() == r.Config.LibraryConfigMap
}

// allWorkspacesOf maps a new library revision to every workspace of the
// namespace: each decides for itself whether it has anything to sync.
func (r *WorkspaceReconciler) allWorkspacesOf(ctx context.Context, o client.Object) []reconcile.Request {
	var wl v1alpha1.WorkspaceList
	if err := r.Client.List(ctx, &wl, client.InNamespace(o.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "list workspaces for a library revision")
		return nil
	}
	out := make([]reconcile.Request, 0, len(wl.Items))
	for i := range wl.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&wl.Items[i])})
	}
	return out
}

// libraryRevision is the revision the library last published, or "" when
// it has published none.
func (r *WorkspaceReconciler) libraryRevision(ctx context.Context, namespace string) string {
	if r.Config.LibraryConfigMap == "" {
		return ""
	}
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: r.Config.LibraryConfigMap}, cm); err != nil {
		return ""
	}
	return cm.Data[revisionKey]
}

// wanted is what a workspace asks of the library: a default host
// workspace (the shared one, or a user's) gets everything (nil), the
// others what their spec names.
func wanted(ws *v1alpha1.Workspace) (skills, tools []string) {
	if v1alpha1.IsSharedDefault(ws) || v1alpha1.IsUserDefault(ws) {
		return nil, nil
	}
	return nonNil(ws.Spec.Skills), nonNil(ws.Spec.Tools)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// needsSync reports why the workspace's library files are out of date, or
// "" when they are current.
func needsSync(ws *v1alpha1.Workspace, revision string) string {
	skills, tools := wanted(ws)
	st := ws.Status.Skills
	request := ws.Annotations[v1alpha1.AnnotationSyncRequested]
	never := st == nil || st.SyncedAt == nil // a failed first attempt leaves only its error
	switch {
	case never && skills != nil && len(skills)+len(tools) == 0 && request == "":
		return "" // asks for nothing and never had anything
	case never:
		return "first sync"
	case request != "" && request != st.Request:
		return "a sync was requested"
	case revision != "" && revision != st.Revision:
		return "the library is at a new revision"
	}
	if skills == nil {
		return ""
	}
	want := make([]string, 0, len(skills)+len(tools))
	for _, s := range skills {
		want = append(want, "skill/"+s)
	}
	for _, t := range tools {
		want = append(want, "tool/"+t)
	}
	have := append(append([]string{}, st.Items...), st.Missing...)
	sort.Strings(want)
	sort.Strings(have)
	if !slices.Equal(slices.Compact(want), slices.Compact(have)) {
		return "the workspace's skills or tools changed"
	}
	return ""
}

// syncSkills brings the workspace's library files up to date through its
// agent. A library that cannot be asked never fails the workspace: the
// condition says so and the sync is retried.
func (r *WorkspaceReconciler) syncSkills(ctx context.Context, ws *v1alpha1.Workspace, agent *agentapi.Client, dir string, o *observation) time.Duration {
	if r.Skills == nil || !r.Skills.Configured() {
		return 0
	}
	gen := ws.Generation
	revision := r.libraryRevision(ctx, ws.Namespace)
	why := needsSync(ws, revision)
	if why == "" {
		if ws.Status.Skills != nil && !hasCondition(o, v1alpha1.ConditionSkillsSynced, metav1.ConditionTrue) {
			o.set(gen, v1alpha1.ConditionSkillsSynced, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, syncedMessage(ws.Status.Skills))
		}
		return 0
	}
	skills, tools := wanted(ws)
	var previous []string
	if ws.Status.Skills != nil {
		previous = ws.Status.Skills.Items
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := r.Skills.Sync(sctx, library.Target{Agent: agent, Dir: dir, Revision: revision, Skills: skills, Tools: tools, Previous: previous})
	if err != nil {
		var ue *library.UnavailableError
		reason := v1alpha1.ReasonSyncRetrying
		if errors.As(err, &ue) {
			reason = v1alpha1.ReasonLibraryUnavailable
		}
		msg := fmt.Sprintf("%s, but: %v (retrying in %s)", why, err, syncRetry)
		o.set(gen, v1alpha1.ConditionSkillsSynced, metav1.ConditionFalse, reason, msg)
		if request := ws.Annotations[v1alpha1.AnnotationSyncRequested]; request != "" {
			if ws.Status.Skills == nil {
				ws.Status.Skills = &v1alpha1.SkillsStatus{}
			}
			ws.Status.Skills.FailedRequest, ws.Status.Skills.LastError = request, msg
		}
		log.FromContext(ctx).Info("library sync failed", "workspace", ws.Name, "error", err.Error())
		return syncRetry
	}
	now := metav1.NewTime(r.now())
	ws.Status.Skills = &v1alpha1.SkillsStatus{Revision: res.Revision, Items: res.Items, Missing: res.Missing, SyncedAt: &now,
		Request: ws.Annotations[v1alpha1.AnnotationSyncRequested]}
	o.set(gen, v1alpha1.ConditionSkillsSynced, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, syncedMessage(ws.Status.Skills))
	r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, "Synced", "SyncSkills", "%s: %s", why, syncedMessage(ws.Status.Skills))
	return 0
}

func syncedMessage(st *v1alpha1.SkillsStatus) string {
	rev := st.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	msg := fmt.Sprintf("%d library items at revision %s", len(st.Items), rev)
	if len(st.Missing) > 0 {
		msg += fmt.Sprintf("; not in the library: %v", st.Missing)
	}
	return msg
}

func hasCondition(o *observation, t string, status metav1.ConditionStatus) bool {
	for _, c := range o.conds {
		if c.Type == t {
			return c.Status == status
		}
	}
	return false
}
