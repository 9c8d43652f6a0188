package controller

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"sortie.dev/api/v1alpha1"
)

// Labels and annotations on the objects a Workspace owns.
const (
	LabelWorkspace    = "sortie.dev/workspace"
	LabelComponent    = "app.kubernetes.io/component"
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	AnnotationHash    = "sortie.dev/pod-spec-hash"
	AnnotationRebuild = "sortie.dev/rebuild"
	managedByValue    = "sortie-workspace-operator"
	componentValue    = "workspace"
	secretTokenKey    = "token"
	secretInitKey     = "init.sh"
	agentBinDir       = "/sortie/bin"
	agentConfigDir    = "/etc/sortie"
	workspaceMount    = "/workspace"
	agentBinary       = "workspace-agent"
	containerName     = "workspace"
	installerName     = "install-agent"
	volumeAgentBin    = "sortie-bin"
	volumeAgentConf   = "sortie-agent"
	volumeData        = "data"
)

// Child object names are derived from the Workspace's name, so there is
// never more than one of each.
func secretName(ws *v1alpha1.Workspace) string { return ws.Name + "-agent" }
func pvcName(ws *v1alpha1.Workspace) string    { return ws.Name + "-data" }
func podName(ws *v1alpha1.Workspace) string    { return ws.Name + "-pod" }

func labels(ws *v1alpha1.Workspace) map[string]string {
	l := map[string]string{LabelWorkspace: ws.Name, LabelComponent: componentValue, LabelManagedBy: managedByValue}
	if ws.Spec.Owner != "" {
		l[v1alpha1.LabelOwner] = v1alpha1.OwnerKey(ws.Spec.Owner)
	}
	return l
}

func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// desiredPVC is the workspace volume. With the Retain policy it has no
// owner, so deleting the Workspace leaves it for the user.
func desiredPVC(ws *v1alpha1.Workspace, defaultSize resource.Quantity) *corev1.PersistentVolumeClaim {
	size := defaultSize
	var class *string
	if s := ws.Spec.Storage; s != nil {
		if s.Size != nil {
			size = *s.Size
		}
		class = s.StorageClassName
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: pvcName(ws), Namespace: ws.Namespace, Labels: labels(ws)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
}

func retain(ws *v1alpha1.Workspace) bool {
	return ws.Spec.Storage != nil && ws.Spec.Storage.RetainPolicy == v1alpha1.RetainRetain
}

// podInputs is everything whose change means a new Pod. (Pods made
// before the workspace hardening carry another hash, so an upgraded
// operator replaces each of them once, with the securityContext and limits.)
type podInputs struct {
	Image, AgentImage string
	Env               map[string]string
	InitScript        string
	// Resources are the container's resolved requests and limits (the
	// operator's defaults filled in), so new defaults reach every Pod.
	Resources    corev1.ResourceRequirements
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	Rebuild      int64
	PullPolicy   string
	// Mount is where the volume goes; empty means /workspace. (omitempty
	// keeps the hash of existing container Pods.)
	Mount string `json:",omitempty"`
	// EnvSecret is the Secret whose keys the container gets as
	// environment variables (its values are never in the Pod spec).
	EnvSecret string `json:",omitempty"`
	// Capabilities the workspace container keeps; all others are dropped.
	Capabilities []corev1.Capability
	// RuntimeClass of the Pod; empty: the cluster's default.
	RuntimeClass string `json:",omitempty"`
}

func (in podInputs) hash() string {
	b, _ := json.Marshal(in) // map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// desiredPod is the workspace's Pod: an init container copies the static
// agent into an emptyDir; the main container runs the distro image with
// the agent as PID 1, the volume at /workspace and the agent's token and
// init script from the Secret.
func desiredPod(ws *v1alpha1.Workspace, in podInputs, agentPort int) *corev1.Pod {
	mount := workspaceMount
	home := workspaceMount + "/home"
	if in.Mount != "" {
		// The host runtime: its root holds workspace directories only.
		mount, home = in.Mount, in.Mount+"/.sortie/home"
	}
	// HOME is the workspace's to change; then its own variables, less the
	// names reserved for the agent; the agent's settings come last, so
	// that they win even over a duplicate (the kubelet keeps the last).
	env := []corev1.EnvVar{{Name: "HOME", Value: home}}
	keys := make([]string, 0, len(in.Env))
	for k := range in.Env {
		if !v1alpha1.ReservedEnvName(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != "HOME" {
			env = append(env, corev1.EnvVar{Name: k, Value: in.Env[k]})
		} else {
			env[0].Value = in.Env[k]
		}
	}
	env = append(env,
		corev1.EnvVar{Name: "SORTIE_AGENT_ADDR", Value: fmt.Sprintf(":%d", agentPort)},
		corev1.EnvVar{Name: "SORTIE_AGENT_TOKEN_FILE", Value: agentConfigDir + "/" + secretTokenKey},
		corev1.EnvVar{Name: "SORTIE_AGENT_INIT_SCRIPT", Value: agentConfigDir + "/" + secretInitKey},
		corev1.EnvVar{Name: "SORTIE_AGENT_WORKDIR", Value: mount},
		corev1.EnvVar{Name: "SORTIE_AGENT_STATE_DIR", Value: mount + "/.sortie"},
		corev1.EnvVar{Name: "SORTIE_AGENT_ROOTS", Value: mount + ",/tmp"},
		corev1.EnvVar{Name: "SORTIE_WORKSPACE_NAME", Value: ws.Spec.DisplayName},
	)
	pull := corev1.PullPolicy(in.PullPolicy)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: podName(ws), Namespace: ws.Namespace, Labels: labels(ws),
			Annotations: map[string]string{AnnotationHash: in.hash(), AnnotationRebuild: strconv.FormatInt(in.Rebuild, 10)},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](15),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			NodeSelector:                  in.NodeSelector,
			Tolerations:                   in.Tolerations,
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{{
				Name:            installerName,
				Image:           in.AgentImage,
				ImagePullPolicy: pull,
				Command:         []string{"/" + agentBinary, "install", agentBinDir + "/" + agentBinary},
				VolumeMounts:    []corev1.VolumeMount{{Name: volumeAgentBin, MountPath: agentBinDir}},
				// It copies one file into an emptyDir: no capability at all.
				// Its resources are the workspace's, so the Pod asks for no more.
				Resources:       in.Resources,
				SecurityContext: installerSecurity(),
			}},
			Containers: []corev1.Container{{
				Name:            containerName,
				Image:           in.Image,
				ImagePullPolicy: pull,
				Command:         []string{agentBinDir + "/" + agentBinary},
				WorkingDir:      mount,
				Env:             env,
				Resources:       in.Resources,
				SecurityContext: workspaceSecurity(in.Capabilities),
				Ports:           []corev1.ContainerPort{{Name: "agent", ContainerPort: int32(agentPort)}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intOrPort(agentPort)}},
					PeriodSeconds: 2, FailureThreshold: 1,
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: volumeAgentBin, MountPath: agentBinDir, ReadOnly: true},
					{Name: volumeAgentConf, MountPath: agentConfigDir, ReadOnly: true},
					{Name: volumeData, MountPath: mount},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: volumeAgentBin, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: volumeAgentConf, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName(ws), DefaultMode: ptr.To[int32](0o400)}}},
				{Name: volumeData, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvcName(ws)}}},
			},
		},
	}
	if in.RuntimeClass != "" {
		pod.Spec.RuntimeClassName = ptr.To(in.RuntimeClass)
	}
	if in.EnvSecret != "" {
		// Explicit env (the spec's envVars) wins over envFrom.
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: in.EnvSecret}}}}
	}
	return pod
}

// workspaceSecurity is the workspace container's securityContext. It runs
// untrusted code as root (package installs need root), so it keeps only
// the capabilities given, cannot gain more (no setuid escalation, no
// privileged mode) and runs under the runtime's seccomp profile (set on
// the Pod). Pod Security baseline admits it.
func workspaceSecurity(caps []corev1.Capability) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged:               ptr.To(false),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// installerSecurity is the init container's: it copies the agent as a
// non-root user onto a read-only root (the emptyDir is world-writable).
func installerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged:               ptr.To(false),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		RunAsGroup:               ptr.To[int64](65532),
		ReadOnlyRootFilesystem:   ptr.To(true),
	}
}

func intOrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }
