package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sortie.dev/api/v1alpha1"
)

func TestNeedsSync(t *testing.T) {
	ws := func(name string, typ v1alpha1.WorkspaceType, skills, tools []string, st *v1alpha1.SkillsStatus, request string) *v1alpha1.Workspace {
		w := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.WorkspaceSpec{Type: typ, Skills: skills, Tools: tools}}
		w.Status.Skills = st
		if request != "" {
			w.Annotations = map[string]string{v1alpha1.AnnotationSyncRequested: request}
		}
		return w
	}
	at := metav1.Now()
	synced := &v1alpha1.SkillsStatus{Revision: "r1", Items: []string{"skill/a", "tool/t"}, Missing: []string{"skill/gone"}, Request: "q1", SyncedAt: &at}
	tests := map[string]struct {
		ws       *v1alpha1.Workspace
		revision string
		want     bool
	}{
		"asks for nothing, never synced":    {ws("w", v1alpha1.TypeContainer, nil, nil, nil, ""), "r1", false},
		"asks for a skill, never synced":    {ws("w", v1alpha1.TypeContainer, []string{"a"}, nil, nil, ""), "r1", true},
		"default host, never synced":        {ws("host", v1alpha1.TypeHost, nil, nil, nil, ""), "", true},
		"a host named host that is a box":   {ws("host", v1alpha1.TypeContainer, nil, nil, nil, ""), "r1", false},
		"current":                           {ws("w", v1alpha1.TypeContainer, []string{"a", "gone"}, []string{"t"}, synced, "q1"), "r1", false},
		"current, no revision published":    {ws("w", v1alpha1.TypeContainer, []string{"gone", "a"}, []string{"t"}, synced, ""), "", false},
		"new revision":                      {ws("w", v1alpha1.TypeContainer, []string{"a", "gone"}, []string{"t"}, synced, ""), "r2", true},
		"a skill added":                     {ws("w", v1alpha1.TypeContainer, []string{"a", "gone", "b"}, []string{"t"}, synced, ""), "r1", true},
		"a tool dropped":                    {ws("w", v1alpha1.TypeContainer, []string{"a", "gone"}, nil, synced, ""), "r1", true},
		"everything dropped, once synced":   {ws("w", v1alpha1.TypeContainer, nil, nil, synced, ""), "r1", true},
		"a sync requested":                  {ws("w", v1alpha1.TypeContainer, []string{"a", "gone"}, []string{"t"}, synced, "q2"), "r1", true},
		"default host, current at revision": {ws("host", v1alpha1.TypeHost, nil, nil, synced, ""), "r1", false},
		"default host, new revision":        {ws("host", v1alpha1.TypeHost, nil, nil, synced, ""), "r2", true},
		"only a failed first attempt":       {ws("w", v1alpha1.TypeContainer, []string{"a"}, nil, &v1alpha1.SkillsStatus{FailedRequest: "q1", LastError: "down"}, "q1"), "r1", true},
		"nothing asked, but a sync is":      {ws("w", v1alpha1.TypeContainer, nil, nil, nil, "q1"), "r1", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			why := needsSync(tc.ws, tc.revision)
			if (why != "") != tc.want {
				t.Errorf("needsSync = %q, want a sync: %v", why, tc.want)
			}
		})
	}
}
