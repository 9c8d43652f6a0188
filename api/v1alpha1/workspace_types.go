package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkspaceType says where a workspace runs.
// +kubebuilder:validation:Enum=host;container
type WorkspaceType string

// Workspace types.
const (
	// TypeHost is a directory in the shared host-runtime Pod.
	TypeHost WorkspaceType = "host"
	// TypeContainer is a Pod of its own with a volume.
	TypeContainer WorkspaceType = "container"
)

// DefaultHostName is the metadata.name of the default host workspace,
// which always exists and gets every skill of the library.
const DefaultHostName = "host"

// HostRoot is where the host runtime keeps its volume: every host
// workspace's path lies inside it.
const HostRoot = "/workspaces"

// InHostRoot reports whether p (absolute, without . or .. segments) is
// HostRoot or a directory below it.
func InHostRoot(p string) bool {
	return p == HostRoot || (len(p) > len(HostRoot)+1 && p[:len(HostRoot)+1] == HostRoot+"/")
}

// Distro names a Linux distribution; the operator maps it to an image.
// +kubebuilder:validation:Enum=ubuntu-noble;ubuntu-jammy;debian-bookworm;arch-linux
type Distro string

// Distros a workspace may ask for.
const (
	DistroUbuntuNoble    Distro = "ubuntu-noble"
	DistroUbuntuJammy    Distro = "ubuntu-jammy"
	DistroDebianBookworm Distro = "debian-bookworm"
	DistroArchLinux      Distro = "arch-linux"
)

// RetainPolicy says what happens to a workspace's volume when it is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type RetainPolicy string

// Retain policies.
const (
	RetainDelete RetainPolicy = "Delete"
	RetainRetain RetainPolicy = "Retain"
)

// WorkspaceStorage is the workspace's volume, mounted at /workspace.
type WorkspaceStorage struct {
	// Size of the volume.
	// +kubebuilder:default="10Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// StorageClassName; empty means the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
	// RetainPolicy: Delete removes the volume with the workspace; Retain
	// keeps it (it is then not owned by the Workspace).
	// +kubebuilder:default=Delete
	// +optional
	RetainPolicy RetainPolicy `json:"retainPolicy,omitempty"`
}

// WorkspaceSpec is what the user asked for.
// +kubebuilder:validation:XValidation:rule="self.type == 'container' || (!has(self.distro) && !has(self.image) && !has(self.initScript) && !has(self.template) && !has(self.resources) && !has(self.runtimeClassName))",message="distro, image, initScript, template, resources and runtimeClassName apply to container workspaces only"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.type) || self.type == oldSelf.type",message="type cannot change; create a new workspace"
// +kubebuilder:validation:XValidation:rule="has(self.owner) == has(oldSelf.owner) && (!has(self.owner) || self.owner == oldSelf.owner)",message="owner cannot change: it is set when the workspace is made"
type WorkspaceSpec struct {
	// DisplayName is the workspace's human-readable name (the REST "name").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	DisplayName string `json:"displayName"`

	// Owner is the id of the user the workspace belongs to. The REST API
	// sets it from the caller's token; it cannot change afterwards. A
	// workspace without an owner (made with kubectl) belongs to the admins.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Owner string `json:"owner,omitempty"`

	// Type is host or container.
	// +kubebuilder:default=host
	// +optional
	Type WorkspaceType `json:"type,omitempty"`

	// Path is the workspace's directory: for host workspaces a folder in the
	// host runtime, for containers where the volume is mounted.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)[.][.]?(/|$)')",message="path must not contain . or .. segments"
	// +optional
	Path string `json:"path,omitempty"`

	// Distro is the Linux distribution of a container workspace.
	// +optional
	Distro Distro `json:"distro,omitempty"`

	// Image overrides the distro's image.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// Template is the library workspace-template the workspace was made from.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
	// +optional
	Template string `json:"template,omitempty"`

	// Skills from the library to install into the workspace.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
	// +listType=set
	// +optional
	Skills []string `json:"skills,omitempty"`

	// Tools from the library to install into the workspace.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
	// +listType=set
	// +optional
	Tools []string `json:"tools,omitempty"`

	// EnvVars are set for everything that runs in the workspace.
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))",message="environment variable names must be letters, digits and underscores, not starting with a digit"
	// +optional
	EnvVars map[string]string `json:"envVars,omitempty"`

	// EnvSecretRef names the Secret whose keys are set as environment
	// variables of everything that runs in the workspace (a template's
	// secret values), so they never appear in the spec. It can only be the
	// workspace's own <name>-env; EnvVars win over it.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	EnvSecretRef string `json:"envSecretRef,omitempty"`

	// InitScript runs once each time the workspace's Pod starts.
	// +kubebuilder:validation:MaxLength=262144
	// +optional
	InitScript string `json:"initScript,omitempty"`

	// Resources of the workspace container: CPU, memory and
	// ephemeral-storage requests and limits. What is not set comes from the
	// operator's defaults; the operator refuses values above its maxima
	// (and the chart's admission policy does too).
	// +optional
	Resources *WorkspaceResources `json:"resources,omitempty"`

	// RuntimeClassName runs the Pod under that RuntimeClass (gVisor, Kata)
	// where the cluster has one; the operator may allow only some.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	RuntimeClassName string `json:"runtimeClassName,omitempty"`

	// Storage is the workspace volume.
	// +optional
	Storage *WorkspaceStorage `json:"storage,omitempty"`

	// NodeSelector constrains where the Pod runs.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the Pod.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Suspend removes the Pod and keeps the volume (phase stopped).
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Rebuild: changing it recreates the Pod and runs the init script again
	// (POST /api/workspaces/{id}/build sets it).
	// +kubebuilder:validation:Minimum=0
	// +optional
	Rebuild int64 `json:"rebuild,omitempty"`
}

// Phase is the one-word summary of a workspace's state, as the REST API
// shows it in "status".
// +kubebuilder:validation:Enum=pending;building;ready;error;stopped
type Phase string

// Phases.
const (
	PhasePending  Phase = "pending"
	PhaseBuilding Phase = "building"
	PhaseReady    Phase = "ready"
	PhaseError    Phase = "error"
	PhaseStopped  Phase = "stopped"
)

// Condition types, in the order a workspace passes them.
const (
	ConditionScheduled    = "Scheduled"    // the Pod is bound to a node
	ConditionAgentReady   = "AgentReady"   // the workspace-agent answers
	ConditionInitialized  = "Initialized"  // the init script succeeded
	ConditionSkillsSynced = "SkillsSynced" // library skills and tools are in place
	ConditionReady        = "Ready"        // all of the above
)

// Condition reasons. Those in UserFixable are mistakes the user can fix in
// the spec; the others are failures of the infrastructure.
const (
	ReasonPending          = "Pending"
	ReasonCreating         = "Creating"
	ReasonAsExpected       = "AsExpected"
	ReasonSuspended        = "Suspended"
	ReasonImagePullFailed  = "ImagePullFailed"  // user: the image does not exist
	ReasonInitScriptFailed = "InitScriptFailed" // user: the init script exited non-zero
	ReasonQuotaExceeded    = "QuotaExceeded"    // user: a ResourceQuota refused the Pod
	ReasonInvalidSpec      = "InvalidSpec"      // user: e.g. an unknown distro mapping
	ReasonUnschedulable    = "Unschedulable"    // infra: no node fits
	ReasonVolumeFailed     = "VolumeFailed"     // infra: the volume cannot be bound or mounted
	ReasonPodFailed        = "PodFailed"        // infra: the container crashed or was evicted
	ReasonLimitExceeded    = "LimitExceeded"    // user: evicted for using more than its limits (ephemeral storage)
	ReasonAgentUnreachable = "AgentUnreachable" // infra: the agent does not answer
	ReasonStartTimeout     = "StartTimeout"     // infra: not ready within the start deadline
	ReasonSyncFailed       = "SyncFailed"       // infra: skills could not be written
	// ReasonLibraryUnavailable: the library could not be asked; the
	// workspace stays usable and the sync is retried (not a failure).
	ReasonLibraryUnavailable = "LibraryUnavailable"
	// ReasonSyncRetrying: writing the library's files failed and is
	// retried (not a failure either).
	ReasonSyncRetrying = "SyncRetrying"
)

// UserFixable reports whether a failure reason is the user's to fix.
func UserFixable(reason string) bool {
	switch reason {
	case ReasonImagePullFailed, ReasonInitScriptFailed, ReasonQuotaExceeded, ReasonInvalidSpec, ReasonLimitExceeded:
		return true
	}
	return false
}

// IsFailure reports whether a condition reason ends a start attempt: a
// stage False for such a reason makes the phase error.
func IsFailure(reason string) bool {
	switch reason {
	case ReasonImagePullFailed, ReasonInitScriptFailed, ReasonQuotaExceeded, ReasonInvalidSpec, ReasonLimitExceeded,
		ReasonUnschedulable, ReasonVolumeFailed, ReasonPodFailed, ReasonStartTimeout, ReasonSyncFailed:
		return true
	}
	return false
}

// StageTimes record when a workspace reached each stage of its latest start.
type StageTimes struct {
	Scheduled   *metav1.Time `json:"scheduled,omitempty"`
	AgentReady  *metav1.Time `json:"agentReady,omitempty"`
	Initialized *metav1.Time `json:"initialized,omitempty"`
	Ready       *metav1.Time `json:"ready,omitempty"`
}

// WorkspaceStatus is what the operator observed.
type WorkspaceStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is computed from the conditions by ComputePhase.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Conditions: Scheduled, AgentReady, Initialized, SkillsSynced, Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// PodName is the workspace's Pod (the host runtime's, for host workspaces).
	// +optional
	PodName string `json:"podName,omitempty"`
	// Image is the image the Pod runs.
	// +optional
	Image string `json:"image,omitempty"`
	// LastError is the latest failure, kept after the Pod is gone.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// InitExitCode is the init script's exit code in the latest run.
	// +optional
	InitExitCode *int32 `json:"initExitCode,omitempty"`
	// ObservedRebuild is the spec.rebuild the current Pod was made for.
	// +optional
	ObservedRebuild int64 `json:"observedRebuild,omitempty"`
	// Stages are the times of the latest start.
	// +optional
	Stages StageTimes `json:"stages,omitempty"`
	// Skills is what the library last put into the workspace.
	// +optional
	Skills *SkillsStatus `json:"skills,omitempty"`
}

// SkillsStatus records the library items synced into a workspace.
type SkillsStatus struct {
	// Revision is the library commit the files came from.
	Revision string `json:"revision,omitempty"`
	// Items are the synced items as type/name (skill/x, tool/y), so the
	// ones later dropped from the spec or the library can be removed.
	// +optional
	Items []string `json:"items,omitempty"`
	// Missing are requested items the library did not have.
	// +optional
	Missing []string `json:"missing,omitempty"`
	// SyncedAt is when the files were written.
	// +optional
	SyncedAt *metav1.Time `json:"syncedAt,omitempty"`
	// Request is the sortie.dev/sync-requested annotation this sync
	// answered, so a caller that asked for a sync knows it happened.
	// +optional
	Request string `json:"request,omitempty"`
	// FailedRequest is the sortie.dev/sync-requested annotation whose
	// latest attempt failed (it is retried), with LastError saying why, so
	// a caller that asked for a sync learns it failed.
	// +optional
	FailedRequest string `json:"failedRequest,omitempty"`
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// AnnotationSyncRequested asks the operator to sync the library into the
// workspace now (its value is any new token, e.g. a timestamp).
const AnnotationSyncRequested = "sortie.dev/sync-requested"

// Workspace is an isolated Linux environment agents work in.
//
// Names are refused at admission when they could take another object's
// children: the reserved prefix sortie- (the host runtimes' Pods, volumes
// and Secrets), and names longer than 63 characters (a name is also a
// label value of the workspace's children).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ws,categories=sortie
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.startsWith('sortie-')",message="names starting with sortie- are reserved for the operator's own objects"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="the name must be at most 63 characters"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.envSecretRef) || self.spec.envSecretRef == self.metadata.name + '-env'",message="spec.envSecretRef can only name the workspace's own Secret, <name>-env"
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Distro",type=string,JSONPath=`.spec.distro`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workspace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WorkspaceSpec   `json:"spec"`
	Status WorkspaceStatus `json:"status,omitempty"`
}

// WorkspaceList is a list of Workspaces.
//
// +kubebuilder:object:root=true
type WorkspaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workspace `json:"items"`
}
