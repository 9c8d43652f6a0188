// Package rest serves the workspace API (/api/workspaces) over the
// Workspace resources, sharing the controller's cache. Handlers translate
// HTTP into Workspace objects and agent calls; the controller remains the
// only writer of status.
package rest

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/config"
)

// DefaultID is the REST id of the default host workspace, as in the
// original server.
const DefaultID = "00000000-0000-0000-0000-000000000000"

// DefaultName is the metadata.name of the default host workspace.
const DefaultName = "host"

// Workspace is the seed's Workspace object, with the extra fields the
// original server returned.
type Workspace struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	WorkspaceType string            `json:"workspace_type"`
	Path          string            `json:"path"`
	Status        string            `json:"status"`
	ErrorMessage  *string           `json:"error_message"`
	Skills        []string          `json:"skills"`
	Tools         []string          `json:"tools"`
	Template      *string           `json:"template"`
	Distro        *string           `json:"distro"`
	EnvVars       map[string]string `json:"env_vars"`
	// SecretEnvVars are the names of the secret environment variables (a
	// template's sealed values, kept in the workspace's env Secret); their
	// values are never in an answer.
	SecretEnvVars []string `json:"secret_env_vars"`
	InitScript    *string  `json:"init_script"`
	// Owner is the owner's user id; null for a workspace made with
	// kubectl without one (it belongs to the admins).
	Owner *string `json:"owner"`
	// Resources are the workspace's own requests and limits (the
	// operator's defaults apply to the rest); null when it sets none.
	Resources *ResourcesRequest `json:"resources"`
	// RuntimeClassName is the RuntimeClass its Pod runs under, if its own.
	RuntimeClassName *string `json:"runtime_class_name"`
	CreatedAt        string  `json:"created_at"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// status is the REST status: the phase, with stopped shown as the seed's
// statuses know it.
func status(ws *v1alpha1.Workspace) string {
	// A rebuild asked for but not yet picked up by the controller: the
	// Pod the status describes is on its way out, so it is not ready.
	if ws.Spec.Type == v1alpha1.TypeContainer && !ws.Spec.Suspend && ws.Spec.Rebuild > ws.Status.ObservedRebuild {
		return string(v1alpha1.PhaseBuilding)
	}
	switch ws.Status.Phase {
	case "":
		return string(v1alpha1.PhasePending)
	default:
		return string(ws.Status.Phase)
	}
}

// toREST is ws over REST under the id the caller knows it by.
func toREST(ws *v1alpha1.Workspace, id string) Workspace {
	out := Workspace{
		ID:               id,
		Name:             ws.Spec.DisplayName,
		WorkspaceType:    string(ws.Spec.Type),
		Path:             ws.Spec.Path,
		Status:           status(ws),
		Skills:           nonNil(ws.Spec.Skills),
		Tools:            nonNil(ws.Spec.Tools),
		Template:         strPtr(ws.Spec.Template),
		Distro:           strPtr(string(ws.Spec.Distro)),
		EnvVars:          ws.Spec.EnvVars,
		SecretEnvVars:    []string{},
		InitScript:       strPtr(ws.Spec.InitScript),
		Owner:            strPtr(ws.Spec.Owner),
		Resources:        resourcesView(ws.Spec.Resources),
		RuntimeClassName: strPtr(ws.Spec.RuntimeClassName),
		CreatedAt:        ws.CreationTimestamp.UTC().Format(time.RFC3339),
	}
	if out.WorkspaceType == "" {
		out.WorkspaceType = string(v1alpha1.TypeHost)
	}
	if out.EnvVars == nil {
		out.EnvVars = map[string]string{}
	}
	if out.Path == "" && ws.Spec.Type == v1alpha1.TypeContainer {
		out.Path = "/workspace"
	}
	if ws.Status.Phase == v1alpha1.PhaseError {
		msg := ws.Status.LastError
		if c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionReady); msg == "" && c != nil {
			msg = c.Message
		}
		out.ErrorMessage = &msg
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sortByName(list []Workspace) {
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].ID == DefaultID || list[j].ID == DefaultID {
			return list[i].ID == DefaultID
		}
		return strings.ToLower(list[i].Name) < strings.ToLower(list[j].Name)
	})
}

// distroAliases accepts the names the original server accepted.
var distroAliases = map[string]v1alpha1.Distro{
	"ubuntu-noble": v1alpha1.DistroUbuntuNoble, "noble": v1alpha1.DistroUbuntuNoble,
	"ubuntu-jammy": v1alpha1.DistroUbuntuJammy, "jammy": v1alpha1.DistroUbuntuJammy,
	"debian-bookworm": v1alpha1.DistroDebianBookworm, "bookworm": v1alpha1.DistroDebianBookworm,
	"arch-linux": v1alpha1.DistroArchLinux, "archlinux": v1alpha1.DistroArchLinux, "arch": v1alpha1.DistroArchLinux,
}

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	itemName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	slugSpace = regexp.MustCompile(`[^a-z0-9]+`)
)

// slug makes a DNS-label prefix of a workspace name from a display name,
// never the reserved prefix (v1alpha1.ReservedPrefix) nor that of a
// default host workspace (host-).
func slug(name string) string {
	s := strings.Trim(slugSpace.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	switch {
	case s == "" || s == DefaultName:
		s = "ws"
	case strings.HasPrefix(s+"-", v1alpha1.ReservedPrefix) || strings.HasPrefix(s+"-", DefaultName+"-"):
		s = "ws-" + s
	}
	return s + "-"
}

// Codes of the workspace resources' refusals.
const (
	// CodeResourcesAboveMaximum: a request or limit is above what the
	// operator allows (SORTIE_WORKSPACE_MAX_RESOURCES).
	CodeResourcesAboveMaximum = "resources_above_maximum"
	// CodeReservedEnv: an env var name the workspace agent keeps for itself.
	CodeReservedEnv = "reserved_env_var"
)

// validWorkspaceEnv checks a workspace's env_vars: valid names, none of
// them the agent's own (v1alpha1.ReservedEnvName), which would steer the
// agent that serves the workspace.
func validWorkspaceEnv(env map[string]string) error {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !envName.MatchString(k) {
			return apierror.BadRequest("env_vars: %q is not a valid variable name", k)
		}
		if v1alpha1.ReservedEnvName(k) {
			return reservedEnv("env_vars", k)
		}
	}
	return nil
}

func reservedEnv(where, name string) error {
	return apierror.Newf(http.StatusBadRequest, CodeReservedEnv,
		"%s: %s is the workspace agent's own setting (names starting %s, SORTIE_WORKSPACE and SORTIE_WORKSPACE_NAME are reserved)",
		where, name, v1alpha1.ReservedEnvPrefix)
}

// Quantity is a Kubernetes quantity in a request body: "500m", "4Gi", or
// a bare number (2, 0.5).
type Quantity string

// UnmarshalJSON accepts a string or a number.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*q = Quantity(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("a quantity is a string such as \"4Gi\" or a number")
	}
	*q = Quantity(n.String())
	return nil
}

// ResourcesRequest is a workspace's "resources" in a request body or a
// template: requests and limits of cpu, memory and ephemeral-storage, as
// a container's. What is left out comes from the operator's defaults.
type ResourcesRequest struct {
	Requests map[string]Quantity `json:"requests"`
	Limits   map[string]Quantity `json:"limits"`
}

// maxQuantityText bounds the text of a refused quantity in the answer;
// the longest one accepted ("999999999999999.999999999Ki") is shorter.
const maxQuantityText = 64

// parseResources turns a body's resources into the spec's, refusing
// unknown resources, bad quantities and ones not positive (400).
func parseResources(where string, r *ResourcesRequest) (*v1alpha1.WorkspaceResources, error) {
	if r == nil || (len(r.Requests) == 0 && len(r.Limits) == 0) {
		return nil, nil
	}
	amounts := func(kind string, m map[string]Quantity) (*v1alpha1.ResourceAmounts, error) {
		if len(m) == 0 {
			return nil, nil
		}
		out := &v1alpha1.ResourceAmounts{}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			text := strings.TrimSpace(string(m[name]))
			var dst **resource.Quantity
			switch name {
			case "cpu":
				dst = &out.CPU
			case "memory":
				dst = &out.Memory
			case "ephemeral-storage", "ephemeral_storage":
				dst = &out.EphemeralStorage
			default:
				return nil, apierror.BadRequest("%s.%s: %q is not cpu, memory or ephemeral-storage", where, kind, name)
			}
			q, err := v1alpha1.ParseAmount(text)
			if err != nil {
				return nil, apierror.BadRequest("%s.%s.%s: %q is %v", where, kind, name, truncate(text, maxQuantityText), err)
			}
			if q.Sign() <= 0 {
				return nil, apierror.BadRequest("%s.%s.%s must be positive, not %s", where, kind, name, q.String())
			}
			if *dst != nil {
				return nil, apierror.BadRequest("%s.%s: %s is given twice", where, kind, name)
			}
			*dst = &q
		}
		return out, nil
	}
	req, err := amounts("requests", r.Requests)
	if err != nil {
		return nil, err
	}
	lim, err := amounts("limits", r.Limits)
	if err != nil {
		return nil, err
	}
	return &v1alpha1.WorkspaceResources{Requests: req, Limits: lim}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkResources refuses resources the operator would not give (a request
// above its limit, anything above the maxima): 400, the same check the
// controller makes, so the refusal comes now and not as an error later.
func (h *Handler) checkResources(res *v1alpha1.WorkspaceResources) error {
	if h.Workload == nil {
		return nil
	}
	_, err := h.Workload.Resources(res)
	var re *config.ResourceError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re) && re.AboveMax:
		return apierror.New(http.StatusBadRequest, CodeResourcesAboveMaximum, "resources: "+re.Msg)
	case errors.As(err, &re):
		return apierror.BadRequest("resources: %s", re.Msg)
	}
	return err
}

// checkRuntimeClass refuses a RuntimeClass that is not a DNS label or that
// the operator does not allow.
func (h *Handler) checkRuntimeClass(where, class string) error {
	w := h.Workload
	if w == nil {
		w = &config.Workload{} // any RuntimeClass
	}
	if _, err := w.RuntimeClassFor(class); err != nil {
		return apierror.BadRequest("%s: %v", where, err)
	}
	return nil
}

// resourcesView is a workspace's own resources as the API shows them.
func resourcesView(r *v1alpha1.WorkspaceResources) *ResourcesRequest {
	if r == nil {
		return nil
	}
	view := func(a *v1alpha1.ResourceAmounts) map[string]Quantity {
		out := map[string]Quantity{}
		if a == nil {
			return out
		}
		for name, q := range map[string]*resource.Quantity{"cpu": a.CPU, "memory": a.Memory, "ephemeral-storage": a.EphemeralStorage} {
			if q != nil {
				out[name] = Quantity(q.String())
			}
		}
		return out
	}
	return &ResourcesRequest{Requests: view(r.Requests), Limits: view(r.Limits)}
}

// applyWorkload puts a create request's resources and RuntimeClass (its
// template's) into spec, refusing what the operator would not give.
func (h *Handler) applyWorkload(spec *v1alpha1.WorkspaceSpec, req *CreateRequest) error {
	res, err := parseResources("resources", req.Resources)
	if err != nil {
		return err
	}
	if spec.Type != v1alpha1.TypeContainer && (res != nil || req.runtimeClass != "") {
		return apierror.BadRequest("resources apply to container workspaces; set workspace_type to container")
	}
	if err := h.checkResources(res); err != nil {
		return err
	}
	if err := h.checkRuntimeClass("the template's runtime_class_name", req.runtimeClass); err != nil {
		return err
	}
	spec.Resources, spec.RuntimeClassName = res, req.runtimeClass
	return nil
}
