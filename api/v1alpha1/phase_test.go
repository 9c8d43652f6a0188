package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cond(t, status, reason string) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason}
}

func TestComputePhase(t *testing.T) {
	tests := map[string]struct {
		suspend bool
		conds   []metav1.Condition
		want    Phase
	}{
		"new":                      {want: PhasePending},
		"waiting for a node":       {conds: []metav1.Condition{cond(ConditionScheduled, "False", ReasonPending)}, want: PhasePending},
		"scheduled, agent coming":  {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionAgentReady, "False", ReasonCreating)}, want: PhaseBuilding},
		"init script running":      {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionAgentReady, "True", ReasonAsExpected), cond(ConditionInitialized, "Unknown", ReasonCreating)}, want: PhaseBuilding},
		"ready":                    {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionReady, "True", ReasonAsExpected)}, want: PhaseReady},
		"init script failed":       {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionInitialized, "False", ReasonInitScriptFailed), cond(ConditionReady, "False", ReasonInitScriptFailed)}, want: PhaseError},
		"bad image":                {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionAgentReady, "False", ReasonImagePullFailed)}, want: PhaseError},
		"unschedulable":            {conds: []metav1.Condition{cond(ConditionScheduled, "False", ReasonUnschedulable)}, want: PhaseError},
		"start timeout":            {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionReady, "False", ReasonStartTimeout)}, want: PhaseError},
		"failure beats ready":      {conds: []metav1.Condition{cond(ConditionSkillsSynced, "False", ReasonSyncFailed), cond(ConditionReady, "True", ReasonAsExpected)}, want: PhaseError},
		"suspended":                {suspend: true, conds: []metav1.Condition{cond(ConditionReady, "True", ReasonAsExpected)}, want: PhaseStopped},
		"suspended after an error": {suspend: true, conds: []metav1.Condition{cond(ConditionInitialized, "False", ReasonInitScriptFailed)}, want: PhaseStopped},
		"not ready, not a failure": {conds: []metav1.Condition{cond(ConditionScheduled, "True", ReasonAsExpected), cond(ConditionReady, "False", ReasonCreating)}, want: PhaseBuilding},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ComputePhase(tc.suspend, tc.conds); got != tc.want {
				t.Errorf("ComputePhase = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestUserFixable(t *testing.T) {
	for reason, want := range map[string]bool{
		ReasonImagePullFailed: true, ReasonInitScriptFailed: true, ReasonQuotaExceeded: true, ReasonInvalidSpec: true, ReasonLimitExceeded: true,
		ReasonUnschedulable: false, ReasonVolumeFailed: false, ReasonPodFailed: false, ReasonAgentUnreachable: false, ReasonStartTimeout: false,
	} {
		if got := UserFixable(reason); got != want {
			t.Errorf("UserFixable(%s) = %v, want %v", reason, got, want)
		}
	}
}

func TestIsFailure(t *testing.T) {
	for reason, want := range map[string]bool{
		ReasonInitScriptFailed: true, ReasonStartTimeout: true, ReasonUnschedulable: true, ReasonLimitExceeded: true,
		ReasonCreating: false, ReasonPending: false, ReasonSuspended: false, ReasonAsExpected: false,
	} {
		if got := IsFailure(reason); got != want {
			t.Errorf("IsFailure(%s) = %v, want %v", reason, got, want)
		}
	}
}
