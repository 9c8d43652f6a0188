// Package rest serves the workspace API (/api/workspaces) over the
// Workspace resources, sharing the controller's cache. Handlers translate
// HTTP into Workspace objects and agent calls; the controller remains the
// only writer of status.
package rest

import (
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"sortie.dev/api/v1alpha1"
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
	Owner     *string `json:"owner"`
	CreatedAt string  `json:"created_at"`
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
		ID:            id,
		Name:          ws.Spec.DisplayName,
		WorkspaceType: string(ws.Spec.Type),
		Path:          ws.Spec.Path,
		Status:        status(ws),
		Skills:        nonNil(ws.Spec.Skills),
		Tools:         nonNil(ws.Spec.Tools),
		Template:      strPtr(ws.Spec.Template),
		Distro:        strPtr(string(ws.Spec.Distro)),
		EnvVars:       ws.Spec.EnvVars,
		SecretEnvVars: []string{},
		InitScript:    strPtr(ws.Spec.InitScript),
		Owner:         strPtr(ws.Spec.Owner),
		CreatedAt:     ws.CreationTimestamp.UTC().Format(time.RFC3339),
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
