package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// Prober asks a Pod's agent about its init script and makes host
// workspace directories.
type Prober interface {
	InitStatus(ctx context.Context, endpoint, token string) (agentapi.InitStatus, error)
	EnsureDir(ctx context.Context, endpoint, token, dir string) error
}

// AgentProber asks through the agent's client.
type AgentProber struct{ HTTP *http.Client }

// EnsureDir implements Prober: mkdir -p through the agent's exec. The
// path goes in the environment, so no quoting can go wrong.
func (p AgentProber) EnsureDir(ctx context.Context, endpoint, token, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := agentapi.NewClient(endpoint, token, p.HTTP).Exec(ctx, agentapi.ExecRequest{
		Command: `mkdir -p -- "$SORTIE_DIR"`, Cwd: "/", TimeoutSecs: 10, Env: map[string]string{"SORTIE_DIR": dir},
	})
	switch {
	case err != nil:
		return fmt.Errorf("ask agent: %w", err)
	case res.ExitCode != 0:
		return fmt.Errorf("mkdir %s: exit code %d: %s", dir, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}

// InitStatus implements InitProber.
func (p AgentProber) InitStatus(ctx context.Context, endpoint, token string) (agentapi.InitStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(endpoint, token, p.HTTP).InitStatus(ctx)
	if err != nil {
		return agentapi.InitStatus{}, fmt.Errorf("ask agent: %w", err)
	}
	return *st, nil
}

// observation is what one look at the Pod and its agent found.
type observation struct {
	conds    []metav1.Condition
	initExit *int32
	failure  string // message of a failure, for lastError
}

func (o *observation) set(gen int64, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&o.conds, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	if status == metav1.ConditionFalse && v1alpha1.IsFailure(reason) && o.failure == "" {
		o.failure = msg
	}
}

// starting resets the conditions for a new start of the workspace's Pod.
func (o *observation) starting(gen int64, msg string) {
	o.conds = nil
	o.set(gen, v1alpha1.ConditionScheduled, metav1.ConditionFalse, v1alpha1.ReasonPending, "waiting for a node")
	o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonCreating, msg)
	o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionFalse, v1alpha1.ReasonCreating, "the init script has not run yet")
	o.set(gen, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCreating, "the workspace is starting")
}

// imagePullReasons are kubelet waiting reasons that mean the image cannot be had.
var imagePullReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true}

// observePod turns the Pod's state into the Scheduled and AgentReady
// conditions; it reports whether the agent should be asked about init.
func observePod(o *observation, gen int64, pod *corev1.Pod, now time.Time, unschedulableAfter time.Duration) (agentUp bool) {
	sched := podCondition(pod, corev1.PodScheduled)
	switch {
	case sched != nil && sched.Status == corev1.ConditionTrue:
		o.set(gen, v1alpha1.ConditionScheduled, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, "bound to node "+pod.Spec.NodeName)
	case sched != nil && sched.Reason == corev1.PodReasonUnschedulable && now.Sub(pod.CreationTimestamp.Time) > unschedulableAfter:
		o.set(gen, v1alpha1.ConditionScheduled, metav1.ConditionFalse, v1alpha1.ReasonUnschedulable, "no node can run the workspace: "+sched.Message)
		return false
	default:
		msg := "waiting for a node"
		if sched != nil && sched.Message != "" {
			msg = sched.Message
		}
		o.set(gen, v1alpha1.ConditionScheduled, metav1.ConditionFalse, v1alpha1.ReasonPending, msg)
		return false
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && imagePullReasons[w.Reason] {
			o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonImagePullFailed,
				fmt.Sprintf("image %s cannot be pulled: %s", cs.Image, w.Message))
			return false
		}
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonPodFailed,
				fmt.Sprintf("container %s keeps crashing: %s", cs.Name, lastTermination(cs)))
			return false
		}
		if w := cs.State.Waiting; w != nil && (w.Reason == "CreateContainerConfigError" || w.Reason == "CreateContainerError") {
			o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonPodFailed,
				fmt.Sprintf("container %s cannot be created: %s", cs.Name, w.Message))
			return false
		}
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		// Stopped for good (an evicted Pod ends Failed or, when its agent
		// exits cleanly on the kubelet's SIGTERM, Succeeded): a rebuild
		// makes a new one, with the volume kept.
		msg := strings.TrimSpace(pod.Status.Reason + ": " + pod.Status.Message)
		if pod.Status.Reason == "Evicted" && strings.Contains(pod.Status.Message, "exceed") {
			o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonLimitExceeded,
				"the workspace used more than its limits and was stopped ("+pod.Status.Message+"); rebuild it to start again (its volume is kept), with larger limits if it needs them")
			return false
		}
		if msg == ":" {
			// The kubelet's eviction leaves only an Event on some nodes (the
			// local one): say what it likely was.
			msg = "its container exited"
			if cs := pod.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
				msg = fmt.Sprintf("its container exited with code %d", cs[0].State.Terminated.ExitCode)
			}
			if l, ok := pod.Spec.Containers[0].Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
				msg += fmt.Sprintf(" (the node stops a workspace that writes more than its ephemeral-storage limit, %s, outside its volume)", l.String())
			}
		}
		o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonPodFailed,
			"the pod stopped: "+strings.TrimPrefix(msg, ": ")+"; rebuild the workspace to start it again (its volume is kept)")
		return false
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonCreating, "the workspace container is starting")
		return false
	}
	return true
}

func lastTermination(cs corev1.ContainerStatus) string {
	if t := cs.LastTerminationState.Terminated; t != nil {
		return fmt.Sprintf("exit code %d (%s)", t.ExitCode, strings.TrimSpace(t.Reason+" "+t.Message))
	}
	return "no exit status"
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// suspended sets every stage False: a suspended workspace has no Pod.
func suspended(o *observation, gen int64) {
	for _, t := range []string{v1alpha1.ConditionScheduled, v1alpha1.ConditionAgentReady, v1alpha1.ConditionInitialized, v1alpha1.ConditionReady} {
		o.set(gen, t, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "the workspace is suspended; its volume is kept")
	}
}

// observeAgent sets AgentReady from whether the agent answered.
func observeAgent(o *observation, gen int64, err error) {
	if err != nil {
		o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionFalse, v1alpha1.ReasonCreating, "waiting for the workspace-agent to answer: "+err.Error())
		return
	}
	o.set(gen, v1alpha1.ConditionAgentReady, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, "the workspace-agent answers")
}

// observeInit turns the agent's answer into AgentReady and Initialized.
func observeInit(o *observation, gen int64, st agentapi.InitStatus, err error) {
	observeAgent(o, gen, err)
	if err != nil {
		return
	}
	switch st.State {
	case agentapi.InitSucceeded:
		o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionTrue, v1alpha1.ReasonAsExpected, "the init script succeeded")
	case agentapi.InitFailed:
		code := -1
		if st.ExitCode != nil {
			code = *st.ExitCode
		}
		c32 := int32(code)
		o.initExit = &c32
		o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionFalse, v1alpha1.ReasonInitScriptFailed,
			fmt.Sprintf("the init script failed with exit code %d; see its log (GET /api/workspaces/{id}/init-log)", code))
	default:
		o.set(gen, v1alpha1.ConditionInitialized, metav1.ConditionFalse, v1alpha1.ReasonCreating, "the init script is running")
	}
}
