package rest

import (
	"context"
	"crypto/rand"
	"path"
	"regexp"
	"strings"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// A container workspace has an agent of its own. Host workspaces share the
// host runtime's agent, so requests for one are confined to it here: its
// directory is the default cwd and the limit of any other, its env vars are
// applied to every command (the runtime's container has none of them), and
// its detached processes carry a prefix that keeps them apart from the
// other host workspaces' in the one agent.

// processID is what REST callers may name a process.
var processID = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

type target struct {
	ws *v1alpha1.Workspace
	// secret is a host workspace's secret environment (its env Secret).
	secret map[string]string
}

// target is ws with what its commands need from the handler.
func (h *Handler) target(ctx context.Context, ws *v1alpha1.Workspace) (target, error) {
	sec, err := h.secretEnv(ctx, ws)
	return target{ws: ws, secret: sec}, err
}

func (t target) host() bool { return t.ws.Spec.Type != v1alpha1.TypeContainer }

// cwd maps a caller's cwd into the workspace. In a host workspace a
// relative cwd starts at its path, and an absolute one must stay inside it.
func (t target) cwd(cwd string) (string, error) {
	if !t.host() {
		return cwd, nil
	}
	root := t.ws.Spec.Path
	if cwd == "" {
		return root, nil
	}
	p := cwd
	if !path.IsAbs(p) {
		p = path.Join(root, p)
	}
	p = path.Clean(p)
	if p != root && !strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/") {
		return "", apierror.BadRequest("cwd %q is outside the workspace directory %s", cwd, root)
	}
	return p, nil
}

// env is a host workspace's secret env vars, under its env vars, under
// the request's own (which win), as a container's Pod has them (envFrom
// under env).
func (t target) env(req map[string]string) map[string]string {
	if !t.host() || len(t.ws.Spec.EnvVars)+len(t.secret) == 0 {
		return req
	}
	out := make(map[string]string, len(t.secret)+len(t.ws.Spec.EnvVars)+len(req))
	for k, v := range t.secret {
		out[k] = v
	}
	for k, v := range t.ws.Spec.EnvVars {
		out[k] = v
	}
	for k, v := range req {
		out[k] = v
	}
	return out
}

// prefix marks a host workspace's processes in the shared agent.
func (t target) prefix() string {
	if !t.host() {
		return ""
	}
	uid := strings.ReplaceAll(string(t.ws.UID), "-", "")
	if len(uid) > 12 {
		uid = uid[:12]
	}
	return "ws" + uid + "."
}

// newProcessID checks a caller's process id (or makes one up) and returns
// the agent's id for it.
func (t target) newProcessID(id string) (string, error) {
	if id == "" {
		if !t.host() {
			return "", nil // the agent names it
		}
		id = "p-" + strings.ToLower(rand.Text()[:16])
	}
	if !processID.MatchString(id) || id == "." || id == ".." {
		return "", apierror.BadRequest("id %q must match [a-zA-Z0-9_.-]{1,64}", id)
	}
	return t.prefix() + id, nil
}

// agentID is the agent's id of a caller's process id.
func (t target) agentID(id string) string { return t.prefix() + id }

// fromAgent turns the agent's view of a process into the caller's; ok is
// false for another host workspace's process.
func (t target) fromAgent(p agentapi.Process) (agentapi.Process, bool) {
	pre := t.prefix()
	if !strings.HasPrefix(p.ID, pre) {
		return p, false
	}
	p.ID = strings.TrimPrefix(p.ID, pre)
	return p, true
}
