package v1alpha1

import (
	"errors"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ResourceAmounts are amounts of the resources a workspace container may
// ask for. Other resources (GPUs, hugepages) are not offered.
//
// Amounts are plain quantities ("500m", "2", "4Gi"): no sign and no
// exponent. resource.ParseQuantity, which the CEL quantity() function and
// every decode of a Workspace call, does not return on a huge exponent
// such as "1e1444444444444444440"; each rule checks the text before it
// calls quantity(), so such a value is refused without being parsed.
// +kubebuilder:validation:XValidation:rule="!has(self.cpu) || string(self.cpu).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$')",message="cpu must be a plain quantity such as 500m, 2 or 4Gi (no sign, no exponent)"
// +kubebuilder:validation:XValidation:rule="!has(self.cpu) || !string(self.cpu).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$') || quantity(string(self.cpu)).isGreaterThan(quantity('0'))",message="cpu must be positive"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || string(self.memory).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$')",message="memory must be a plain quantity such as 500m, 2 or 4Gi (no sign, no exponent)"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || !string(self.memory).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$') || quantity(string(self.memory)).isGreaterThan(quantity('0'))",message="memory must be positive"
// +kubebuilder:validation:XValidation:rule="!has(self.ephemeral__dash__storage) || string(self.ephemeral__dash__storage).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$')",message="ephemeral-storage must be a plain quantity such as 500m, 2 or 4Gi (no sign, no exponent)"
// +kubebuilder:validation:XValidation:rule="!has(self.ephemeral__dash__storage) || !string(self.ephemeral__dash__storage).matches('^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$') || quantity(string(self.ephemeral__dash__storage)).isGreaterThan(quantity('0'))",message="ephemeral-storage must be positive"
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

// plainQuantity is the text of an amount a workspace may ask for, as the
// CRD's rules above accept it.
var plainQuantity = regexp.MustCompile(`^[0-9]{1,15}([.][0-9]{1,9})?([numkMGTPE]|[KMGTPE]i)?$`)

// errNotPlainQuantity: the text is not a plain quantity.
var errNotPlainQuantity = errors.New("not a plain quantity such as 500m, 2 or 4Gi (no sign, no exponent)")

// ParseAmount parses an amount as the CRD accepts it: the text is checked
// against plainQuantity before resource.ParseQuantity sees it, so a huge
// exponent is refused without being parsed. Every reader of an amount a
// user wrote (the REST API, the operator's settings, the library's
// templates) goes through it. Zero passes; positivity is the caller's.
func ParseAmount(s string) (resource.Quantity, error) {
	if !plainQuantity.MatchString(s) {
		return resource.Quantity{}, errNotPlainQuantity
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return resource.Quantity{}, errNotPlainQuantity
	}
	return q, nil
}

// WorkspaceResources are a workspace container's requests and limits, in
// the shape of a container's resources. (A request above its limit is
// refused by the REST API and the operator, and by the Pod's own
// validation; a CEL rule comparing the two would cost more than the
// apiserver allows on fields without a length bound.)
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
