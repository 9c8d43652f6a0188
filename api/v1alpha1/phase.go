package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// stages are the conditions a start passes through, in order.
var stages = [...]string{ConditionScheduled, ConditionAgentReady, ConditionInitialized, ConditionSkillsSynced, ConditionReady}

// ComputePhase is the one place a phase comes from: the spec's suspend flag
// and the conditions. It is pure so that the controller, the REST facade
// and kubectl's printer column can never disagree.
//
//   - suspended → stopped
//   - any stage False for a failure reason → error
//   - Ready True → ready
//   - Scheduled True (the Pod exists on a node, the agent or init is on its way) → building
//   - otherwise → pending
func ComputePhase(suspend bool, conditions []metav1.Condition) Phase {
	if suspend {
		return PhaseStopped
	}
	for _, t := range stages {
		if c := meta.FindStatusCondition(conditions, t); c != nil && c.Status == metav1.ConditionFalse && IsFailure(c.Reason) {
			return PhaseError
		}
	}
	if meta.IsStatusConditionTrue(conditions, ConditionReady) {
		return PhaseReady
	}
	if meta.IsStatusConditionTrue(conditions, ConditionScheduled) {
		return PhaseBuilding
	}
	return PhasePending
}
