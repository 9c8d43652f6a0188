package v1alpha1

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ResourceAmounts are amounts of the resources a workspace container may
// ask for. Other resources (GPUs, hugepages) are not offered.
// +kubebuilder:validation:XValidation:rule="!has(self.cpu) || quantity(string(self.cpu)).isGreaterThan(quantity('0'))",message="cpu must be positive"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || quantity(string(self.memory)).isGreaterThan(quantity('0'))",message="memory must be positive"
// +kubebuilder:validation:XValidation:rule="!has(self.ephemeral__dash__storage) || quantity(string(self.ephemeral__dash__storage)).isGreaterThan(quantity('0'))",message="ephemeral-storage must be positive"
type ResourceAmounts struct {
	// CPU in cores ("500m", "2").
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// Memory in bytes ("512Mi", "4Gi").
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// EphemeralStorage is the container's writable layer, logs and
	// emptyDirs (what apt-get installs outside /workspace).
	// +optional
	EphemeralStorage *resource.Quantity `json:"ephemeral-storage,omitempty"`
}

// WorkspaceResources are a workspace container's requests and limits, in
// the shape of a container's resources.
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || quantity(string(self.requests.cpu)).compareTo(quantity(string(self.limits.cpu))) <= 0",message="the cpu request must not exceed the cpu limit"
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || quantity(string(self.requests.memory)).compareTo(quantity(string(self.limits.memory))) <= 0",message="the memory request must not exceed the memory limit"
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || !has(self.requests.ephemeral__dash__storage) || !has(self.limits.ephemeral__dash__storage) || quantity(string(self.requests.ephemeral__dash__storage)).compareTo(quantity(string(self.limits.ephemeral__dash__storage))) <= 0",message="the ephemeral-storage request must not exceed the ephemeral-storage limit"
type WorkspaceResources struct {
	// Requests are what the scheduler reserves for the workspace.
	// +optional
	Requests *ResourceAmounts `json:"requests,omitempty"`
	// Limits are what the workspace may use at most: above the memory
	// limit a process is OOM-killed, above the ephemeral-storage limit the
	// Pod is evicted, CPU is throttled.
	// +optional
	Limits *ResourceAmounts `json:"limits,omitempty"`
}

// ReservedEnvPrefix begins the names of the workspace-agent's own settings.
const ReservedEnvPrefix = "SORTIE_AGENT_"

// ReservedEnvName reports whether a workspace's environment may not set
// name: the agent's settings (SORTIE_AGENT_*, read by the agent at start:
// its address, token, roots, output caps...) and the variables the agent
// and operator give everything in a workspace (SORTIE_WORKSPACE,
// SORTIE_WORKSPACE_NAME). The REST API refuses them; the controller
// leaves them out of the Pod, where the agent's own values are set.
func ReservedEnvName(name string) bool {
	return strings.HasPrefix(name, ReservedEnvPrefix) || name == "SORTIE_WORKSPACE" || name == "SORTIE_WORKSPACE_NAME"
}
