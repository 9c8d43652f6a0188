package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/library"
)

// libraryError turns a library failure into the answer for the client.
func libraryError(err error, what string) error {
	if errors.Is(err, library.ErrNotFound) {
		return apierror.NotFound("%s is not in the library", what)
	}
	var ue *library.UnavailableError
	if errors.As(err, &ue) {
		return apierror.New(http.StatusServiceUnavailable, CodeLibraryUnavailable, fmt.Sprintf("cannot read %s: %v", what, err))
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// applyTemplate merges a library template into a create request as the
// original does: the workspace becomes a container; env vars merge with
// the request's winning; skills are added to the request's; any other
// value the request gives wins. The init script is the template's
// fragments (init-script/<name>) in order, then its own script or the
// request's.
//
// The template's secret env vars (those its encrypted_keys name, and any
// value still holding an <encrypted> tag) are taken out of the request and
// returned: they go into the workspace's env Secret, never into its spec.
// A request's own value for one of them wins and is an ordinary env var.
func (h *Handler) applyTemplate(ctx context.Context, req *CreateRequest) (map[string]string, error) {
	t, err := h.Library.Template(ctx, req.Template)
	if err != nil {
		return nil, libraryError(err, fmt.Sprintf("workspace template %q", req.Template))
	}
	req.WorkspaceType = string(v1alpha1.TypeContainer)
	env := map[string]string{}
	secret := map[string]string{}
	for k, v := range t.EnvVars {
		if !envName.MatchString(k) {
			return nil, apierror.BadRequest("workspace template %q: %q is not a valid variable name", req.Template, k)
		}
		if v1alpha1.ReservedEnvName(k) {
			return nil, reservedEnv(fmt.Sprintf("workspace template %q", req.Template), k)
		}
		if slices.Contains(t.EncryptedKeys, k) || strings.Contains(v, "<encrypted") {
			secret[k] = v
		} else {
			env[k] = v
		}
	}
	for k, v := range req.EnvVars {
		env[k] = v
		delete(secret, k)
	}
	req.EnvVars = env
	for _, s := range t.Skills {
		if !slices.Contains(req.Skills, s) {
			req.Skills = append(req.Skills, s)
		}
	}
	if req.Distro == "" {
		req.Distro = t.Distro
	}
	// The template's resources unless the request has its own; its
	// RuntimeClass (a request cannot name one).
	if req.Resources == nil && t.Resources != nil {
		req.Resources = &ResourcesRequest{Requests: quantities(t.Resources.Requests), Limits: quantities(t.Resources.Limits)}
	}
	req.runtimeClass = t.RuntimeClassName
	custom := req.InitScript
	if custom == "" {
		custom = t.InitScript
	}
	if len(t.InitScripts) == 0 {
		req.InitScript = custom
		return secret, nil
	}
	var b strings.Builder
	b.WriteString("#!/usr/bin/env bash\n")
	for _, name := range t.InitScripts {
		text, err := h.Library.InitScript(ctx, name)
		switch {
		case errors.Is(err, library.ErrNotFound):
			fmt.Fprintf(&b, "\n# === %s === (skipped: not in the library)\n", name)
			continue
		case err != nil:
			return nil, libraryError(err, fmt.Sprintf("init script %q", name))
		}
		fmt.Fprintf(&b, "\n# === %s ===\n%s\n", name, strings.TrimRight(stripShebang(text), "\n"))
	}
	if custom != "" {
		fmt.Fprintf(&b, "\n# === workspace ===\n%s\n", strings.TrimRight(stripShebang(custom), "\n"))
	}
	req.InitScript = b.String()
	return secret, nil
}

func stripShebang(s string) string {
	if strings.HasPrefix(s, "#!") {
		if _, rest, ok := strings.Cut(s, "\n"); ok {
			return rest
		}
		return ""
	}
	return s
}

// syncWait bounds how long POST /sync waits for the controller.
const syncWait = 90 * time.Second

// sync asks the controller to sync the library into the workspace now and
// answers when it has (the controller stays the only writer of status).
func (h *Handler) sync(c *gin.Context) {
	ws, ok := h.find(c)
	if !ok {
		return
	}
	if !h.Library.Configured() {
		apierror.Respond(c, apierror.New(http.StatusServiceUnavailable, CodeLibraryUnavailable,
			"no library service is configured for the workspace operator (SORTIE_LIBRARY_URL)"))
		return
	}
	if status(ws) != string(v1alpha1.PhaseReady) {
		apierror.Respond(c, apierror.Newf(http.StatusConflict, CodeNotReady, "the workspace is not ready (status %s)", status(ws)))
		return
	}
	token := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := h.modify(c.Request.Context(), ws.Name, func(w *v1alpha1.Workspace) error {
		if w.Annotations == nil {
			w.Annotations = map[string]string{}
		}
		w.Annotations[v1alpha1.AnnotationSyncRequested] = token
		return nil
	}); err != nil {
		apierror.Respond(c, fromKube(err))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), syncWait)
	defer cancel()
	for {
		cur := &v1alpha1.Workspace{}
		if err := h.Client.Get(ctx, client.ObjectKeyFromObject(ws), cur); err == nil {
			if cur.Status.Skills != nil && cur.Status.Skills.Request == token {
				c.JSON(http.StatusOK, h.view(ctx, cur, callerOf(c)))
				return
			}
			if st := cur.Status.Skills; st != nil && st.FailedRequest == token {
				apierror.Respond(c, apierror.New(http.StatusServiceUnavailable, CodeLibraryUnavailable, st.LastError))
				return
			}
		}
		select {
		case <-ctx.Done():
			apierror.Respond(c, apierror.New(http.StatusGatewayTimeout, "timeout", "the sync did not finish in time; see GET /api/workspaces/{id}/debug"))
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func quantities(m map[string]string) map[string]Quantity {
	out := make(map[string]Quantity, len(m))
	for k, v := range m {
		out[k] = Quantity(v)
	}
	return out
}
