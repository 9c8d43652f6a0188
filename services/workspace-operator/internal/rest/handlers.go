package rest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/controller"
	"sortie.dev/services/workspace-operator/internal/library"
)

// Codes of this API beside kit's.
const (
	CodeNotReady           = "workspace_not_ready"
	CodeLibraryUnavailable = "library_unavailable"
	CodeAgentUnavailable   = "agent_unavailable"
	CodeNotContainer       = "not_a_container"
)

// Handler serves /api/workspaces.
type Handler struct {
	Client        client.Client // cached reads, writes to the API server
	Reader        client.Reader // uncached reads, before updates
	Namespace     string
	DefaultDistro v1alpha1.Distro
	AgentPort     int
	HTTP          *http.Client // for agent calls; nil: agentapi.NewClient's default
	Library       *library.Client
	Log           *slog.Logger
	// MultiUser (SORTIE_AUTH_MODE=multi_user): the nil UUID is the caller's
	// own default host workspace, made on first use, and host workspaces
	// live in their owner's host runtime.
	MultiUser bool
	// Workload bounds what a new workspace may ask for (resources,
	// RuntimeClass), as the controller does; nil: no bounds here.
	Workload *config.Workload
	// ExecMaxOutput caps each of stdout and stderr of an exec as the
	// operator passes it on, whatever the agent sends (the agent has its
	// own cap, SORTIE_AGENT_EXEC_MAX_OUTPUT); past it the stream is cut,
	// marked truncated and ends with agentapi.TruncationMarker. Zero means
	// DefaultExecMaxOutput.
	ExecMaxOutput int64
}

// DefaultExecMaxOutput is Handler.ExecMaxOutput's default, the agent's
// own default cap.
const DefaultExecMaxOutput = 10 << 20

func (h *Handler) execMaxOutput() int64 {
	if h.ExecMaxOutput > 0 {
		return h.ExecMaxOutput
	}
	return DefaultExecMaxOutput
}

// Register adds the routes behind auth.
func (h *Handler) Register(r gin.IRouter, auth gin.HandlerFunc) {
	g := r.Group("/api/workspaces", auth)
	g.GET("", h.list)
	g.POST("", h.create)
	g.GET("/:id", h.get)
	g.PUT("/:id", h.update)
	g.DELETE("/:id", h.delete)
	g.POST("/:id/build", h.build)
	g.POST("/:id/exec", h.exec)
	g.POST("/:id/sync", h.sync)
	g.GET("/:id/debug", h.debug)
	g.GET("/:id/init-log", h.initLog)
	g.POST("/:id/rerun-init", h.rerunInit)
	h.registerProcesses(g)
	r.GET("/api/stats", auth, h.stats)
}

// list answers the workspaces the caller sees (visible), the caller's
// default first (made on first use in multi-user mode), then by name.
func (h *Handler) list(c *gin.Context) {
	ctx := c.Request.Context()
	who := callerOf(c)
	if h.MultiUser && isUser(who) {
		if _, err := h.defaultWorkspace(ctx, who); err != nil {
			apierror.Respond(c, err)
			return
		}
	}
	items, err := h.visible(ctx, who, c.Query("owner"))
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	out := make([]Workspace, 0, len(items))
	for i := range items {
		out = append(out, h.view(ctx, &items[i], who))
	}
	sortByName(out)
	c.JSON(http.StatusOK, out)
}

func (h *Handler) get(c *gin.Context) {
	if ws, ok := h.find(c); ok {
		c.JSON(http.StatusOK, h.view(c.Request.Context(), ws, callerOf(c)))
	}
}

// CreateRequest is the body of POST /api/workspaces.
type CreateRequest struct {
	Name          string            `json:"name"`
	WorkspaceType string            `json:"workspace_type"`
	Path          string            `json:"path"`
	Skills        []string          `json:"skills"`
	Tools         []string          `json:"tools"`
	Template      string            `json:"template"`
	Distro        string            `json:"distro"`
	EnvVars       map[string]string `json:"env_vars"`
	InitScript    string            `json:"init_script"`
	// Owner is never taken from the body: a workspace is the caller's.
	// A body naming anyone else is refused (400).
	Owner *string `json:"owner"`
	// Resources of a container workspace, within the operator's maxima.
	Resources *ResourcesRequest `json:"resources"`
	// runtimeClass comes from the template only (admins write templates).
	runtimeClass string
}

// checkOwner refuses a body that names an owner other than who (the
// owner comes from the token, and never changes).
func checkOwner(owner *string, who string) error {
	if owner != nil && *owner != who {
		return apierror.BadRequest("owner is always the caller (%q) and cannot be set or changed", who)
	}
	return nil
}

func validName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return apierror.BadRequest("name is required")
	case len(name) > 128:
		return apierror.BadRequest("name must be at most 128 characters")
	case strings.Contains(name, "..") || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, "."):
		return apierror.BadRequest("name must not contain '..', '/' or '\\' or start with '.'")
	}
	return nil
}

func validItems(field string, items []string) error {
	for _, s := range items {
		if !itemName.MatchString(s) {
			return apierror.BadRequest("%s: %q is not a valid library name", field, s)
		}
	}
	return nil
}

func validEnv(env map[string]string) error {
	for k := range env {
		if !envName.MatchString(k) {
			return apierror.BadRequest("env_vars: %q is not a valid variable name", k)
		}
	}
	return nil
}

func parseDistro(s string) (v1alpha1.Distro, error) {
	d, ok := distroAliases[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return "", apierror.BadRequest("distro %q is not supported; use ubuntu-noble, ubuntu-jammy, debian-bookworm or arch-linux", s)
	}
	return d, nil
}

// validPath accepts absolute paths without . or .. segments, as the CRD does.
func validPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return apierror.BadRequest("path %q must be absolute", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return apierror.BadRequest("path %q must not contain . or .. segments", p)
		}
	}
	return nil
}

func (h *Handler) create(c *gin.Context) {
	who := callerOf(c)
	if !isUser(who) {
		apierror.Respond(c, apierror.New(http.StatusForbidden, apierror.CodeForbidden,
			"a workspace belongs to a user: a service creates one with a token delegated by that user"))
		return
	}
	var req CreateRequest
	if err := apierror.DecodeJSON(c.Request, &req); err != nil {
		apierror.Respond(c, err)
		return
	}
	if err := errors.Join(checkOwner(req.Owner, who.UserID), validName(req.Name), validItems("skills", req.Skills), validItems("tools", req.Tools), validWorkspaceEnv(req.EnvVars)); err != nil {
		apierror.Respond(c, err)
		return
	}
	var secretEnv map[string]string
	if req.Template != "" {
		if !itemName.MatchString(req.Template) {
			apierror.Respond(c, apierror.BadRequest("template: %q is not a valid library name", req.Template))
			return
		}
		var err error
		if secretEnv, err = h.applyTemplate(c.Request.Context(), &req); err != nil {
			apierror.Respond(c, err)
			return
		}
	}
	spec := v1alpha1.WorkspaceSpec{
		DisplayName: strings.TrimSpace(req.Name), Template: req.Template, Owner: who.UserID,
		Skills: req.Skills, Tools: req.Tools, EnvVars: req.EnvVars, InitScript: req.InitScript,
	}
	switch strings.ToLower(req.WorkspaceType) {
	case "", "host":
		spec.Type = v1alpha1.TypeHost
		if req.Distro != "" || req.InitScript != "" {
			apierror.Respond(c, apierror.BadRequest("distro and init_script apply to container workspaces; set workspace_type to container"))
			return
		}
		spec.Path = req.Path
		if spec.Path == "" {
			spec.Path = v1alpha1.HostRoot + "/" + strings.TrimSuffix(slug(spec.DisplayName), "-")
		}
		if err := validPath(spec.Path); err != nil {
			apierror.Respond(c, err)
			return
		}
		spec.Path = path.Clean(spec.Path)
		if !v1alpha1.InHostRoot(spec.Path) {
			apierror.Respond(c, apierror.BadRequest("path %q must lie inside %s, where the host runtime keeps host workspaces", req.Path, v1alpha1.HostRoot))
			return
		}
	case "container", "chroot":
		spec.Type = v1alpha1.TypeContainer
		spec.Distro = h.DefaultDistro
		if req.Distro != "" {
			d, err := parseDistro(req.Distro)
			if err != nil {
				apierror.Respond(c, err)
				return
			}
			spec.Distro = d
		}
	default:
		apierror.Respond(c, apierror.BadRequest("workspace_type %q must be host or container", req.WorkspaceType))
		return
	}
	if err := h.applyWorkload(&spec, &req); err != nil {
		apierror.Respond(c, err)
		return
	}
	ws, err := h.createWorkspace(c.Request.Context(), spec, secretEnv)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	h.Log.InfoContext(c.Request.Context(), "workspace created", "workspace", ws.Name, "id", ws.UID, "type", ws.Spec.Type, "owner", ws.Spec.Owner)
	h.waitCached(c.Request.Context(), ws)
	c.JSON(http.StatusOK, h.view(c.Request.Context(), ws, who))
}

// createWorkspace stores a new Workspace and, when it has secret
// environment variables, its env Secret <name>-env (owned by it, so it
// goes with it). The name is chosen here because the spec names the
// Secret; a name taken (by a Workspace, or by a Secret someone made in
// advance) is tried again with another.
func (h *Handler) createWorkspace(ctx context.Context, spec v1alpha1.WorkspaceSpec, secretEnv map[string]string) (*v1alpha1.Workspace, error) {
	key := v1alpha1.OwnerKey(spec.Owner)
	for range 5 {
		name := nameFor(spec.DisplayName)
		ws := &v1alpha1.Workspace{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.Namespace, Labels: map[string]string{v1alpha1.LabelOwner: key}},
			Spec:       spec,
		}
		if len(secretEnv) > 0 {
			ws.Spec.EnvSecretRef = v1alpha1.EnvSecretName(name)
		}
		if err := h.Client.Create(ctx, ws); err != nil {
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return nil, fromKube(err)
		}
		if len(secretEnv) == 0 {
			return ws, nil
		}
		err := h.createEnvSecret(ctx, ws, secretEnv)
		if err == nil {
			return ws, nil
		}
		if derr := h.Client.Delete(ctx, ws); client.IgnoreNotFound(derr) != nil {
			h.Log.ErrorContext(ctx, "a workspace whose env secret failed could not be deleted", "workspace", name, "error", derr.Error())
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create the workspace's env secret: %w", err)
		}
		h.Log.WarnContext(ctx, "a Secret already had the name of a new workspace's env secret; trying another name", "secret", v1alpha1.EnvSecretName(name))
	}
	return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, "no free name for the workspace; try again")
}

// createEnvSecret stores a workspace's secret environment variables in its
// env Secret, controlled by the Workspace.
func (h *Handler) createEnvSecret(ctx context.Context, ws *v1alpha1.Workspace, env map[string]string) error {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ws.Spec.EnvSecretRef, Namespace: ws.Namespace, Labels: map[string]string{
			controller.LabelWorkspace: ws.Name, controller.LabelComponent: "workspace-env", v1alpha1.LabelOwner: v1alpha1.OwnerKey(ws.Spec.Owner)}},
		Type: corev1.SecretTypeOpaque,
		Data: make(map[string][]byte, len(env)),
	}
	for k, v := range env {
		sec.Data[k] = []byte(v)
	}
	if err := controllerutil.SetControllerReference(ws, sec, h.Client.Scheme()); err != nil {
		return err
	}
	return h.Client.Create(ctx, sec)
}

// fromKube turns the API server's refusals into 4xx answers.
func fromKube(err error) error {
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return apierror.BadRequest("%s", err.Error())
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return apierror.New(http.StatusConflict, apierror.CodeConflict, err.Error())
	case apierrors.IsNotFound(err):
		return apierror.NotFound("%s", err.Error())
	case apierrors.IsForbidden(err):
		return apierror.New(http.StatusForbidden, apierror.CodeForbidden, "the workspace operator may not do this: "+err.Error())
	}
	return err
}

// UpdateRequest is the body of PUT /api/workspaces/{id}: every field is
// optional; an empty string clears a value.
type UpdateRequest struct {
	Name       *string            `json:"name"`
	Skills     *[]string          `json:"skills"`
	Tools      *[]string          `json:"tools"`
	Template   *string            `json:"template"`
	Distro     *string            `json:"distro"`
	EnvVars    *map[string]string `json:"env_vars"`
	InitScript *string            `json:"init_script"`
	// Owner cannot change; a body naming another is refused (400).
	Owner *string `json:"owner"`
}

// modify applies f to the latest version of the workspace and stores it,
// retrying when someone else wrote in between.
func (h *Handler) modify(ctx context.Context, name string, f func(*v1alpha1.Workspace) error) (*v1alpha1.Workspace, error) {
	ws := &v1alpha1.Workspace{}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := h.Reader.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: name}, ws); err != nil {
			return err
		}
		if err := f(ws); err != nil {
			return err
		}
		return h.Client.Update(ctx, ws)
	})
	return ws, err
}

func (h *Handler) update(c *gin.Context) {
	var req UpdateRequest
	if err := apierror.DecodeJSON(c.Request, &req); err != nil {
		apierror.Respond(c, err)
		return
	}
	found, ok := h.find(c)
	if !ok {
		return
	}
	if req.Owner != nil && *req.Owner != found.Spec.Owner {
		apierror.Respond(c, apierror.BadRequest("owner cannot change"))
		return
	}
	if req.Template != nil && *req.Template != "" {
		// As the original, an update only records the template's name; it
		// must exist.
		if !itemName.MatchString(*req.Template) {
			apierror.Respond(c, apierror.BadRequest("template: %q is not a valid library name", *req.Template))
			return
		}
		if _, err := h.Library.Template(c.Request.Context(), *req.Template); err != nil {
			apierror.Respond(c, libraryError(err, fmt.Sprintf("workspace template %q", *req.Template)))
			return
		}
	}
	ws, err := h.modify(c.Request.Context(), found.Name, func(ws *v1alpha1.Workspace) error {
		if req.Name != nil {
			if err := validName(*req.Name); err != nil {
				return err
			}
			ws.Spec.DisplayName = strings.TrimSpace(*req.Name)
		}
		if req.Skills != nil {
			if err := validItems("skills", *req.Skills); err != nil {
				return err
			}
			ws.Spec.Skills = *req.Skills
		}
		if req.Tools != nil {
			if err := validItems("tools", *req.Tools); err != nil {
				return err
			}
			ws.Spec.Tools = *req.Tools
		}
		if req.Template != nil {
			ws.Spec.Template = *req.Template
		}
		if req.EnvVars != nil {
			if err := validWorkspaceEnv(*req.EnvVars); err != nil {
				return err
			}
			ws.Spec.EnvVars = *req.EnvVars
		}
		if req.Distro != nil || req.InitScript != nil {
			if ws.Spec.Type != v1alpha1.TypeContainer {
				return apierror.BadRequest("distro and init_script apply to container workspaces")
			}
		}
		if req.Distro != nil {
			ws.Spec.Distro = ""
			if *req.Distro != "" {
				d, err := parseDistro(*req.Distro)
				if err != nil {
					return err
				}
				ws.Spec.Distro = d
			}
		}
		if req.InitScript != nil {
			ws.Spec.InitScript = *req.InitScript
		}
		return nil
	})
	if err != nil {
		apierror.Respond(c, fromKube(err))
		return
	}
	c.JSON(http.StatusOK, h.view(c.Request.Context(), ws, callerOf(c)))
}

func (h *Handler) delete(c *gin.Context) {
	ws, ok := h.find(c)
	if !ok {
		return
	}
	if ws.Name == DefaultName || v1alpha1.IsUserDefault(ws) {
		apierror.Respond(c, apierror.BadRequest("a default host workspace cannot be deleted"))
		return
	}
	if err := h.Client.Delete(c.Request.Context(), ws); err != nil && !apierrors.IsNotFound(err) {
		apierror.Respond(c, fromKube(err))
		return
	}
	h.Log.InfoContext(c.Request.Context(), "workspace deleted", "workspace", ws.Name, "id", ws.UID)
	c.JSON(http.StatusOK, gin.H{"id": h.restID(ws, callerOf(c)), "deleted": true})
}

// BuildRequest is the body of POST /api/workspaces/{id}/build.
type BuildRequest struct {
	Distro  string `json:"distro"`
	Rebuild bool   `json:"rebuild"`
}

func (h *Handler) build(c *gin.Context) {
	var req BuildRequest
	if c.Request.ContentLength != 0 {
		if err := apierror.DecodeJSON(c.Request, &req); err != nil {
			apierror.Respond(c, err)
			return
		}
	}
	found, ok := h.find(c)
	if !ok {
		return
	}
	if found.Spec.Type != v1alpha1.TypeContainer {
		apierror.Respond(c, apierror.New(http.StatusBadRequest, CodeNotContainer, "only container workspaces are built"))
		return
	}
	var distro v1alpha1.Distro
	if req.Distro != "" {
		d, err := parseDistro(req.Distro)
		if err != nil {
			apierror.Respond(c, err)
			return
		}
		distro = d
	}
	if found.Status.Phase == v1alpha1.PhaseBuilding && !req.Rebuild && distro == "" {
		apierror.Respond(c, apierror.New(http.StatusConflict, apierror.CodeConflict, "the workspace is already building"))
		return
	}
	ws, err := h.modify(c.Request.Context(), found.Name, func(ws *v1alpha1.Workspace) error {
		changed := distro != "" && distro != ws.Spec.Distro
		if changed {
			ws.Spec.Distro = distro
		}
		// A rebuild, a new distro or a failed workspace gets a new Pod.
		if req.Rebuild || changed || ws.Status.Phase == v1alpha1.PhaseError || ws.Spec.Suspend {
			ws.Spec.Rebuild++
		}
		ws.Spec.Suspend = false
		return nil
	})
	if err != nil {
		apierror.Respond(c, fromKube(err))
		return
	}
	out := h.view(c.Request.Context(), ws, callerOf(c))
	if out.Status != string(v1alpha1.PhaseReady) || req.Rebuild {
		out.Status, out.ErrorMessage = string(v1alpha1.PhaseBuilding), nil
	}
	c.JSON(http.StatusOK, out)
}

// agentFor returns a client for the agent serving a workspace (its own, or
// the host runtime's; a ready one when requireReady), or answers the
// request itself.
func (h *Handler) agentFor(c *gin.Context, ws *v1alpha1.Workspace, requireReady bool) (*agentapi.Client, bool) {
	if requireReady && status(ws) != string(v1alpha1.PhaseReady) {
		apierror.Respond(c, apierror.Newf(http.StatusConflict, CodeNotReady, "the workspace is not ready (status %s)", status(ws)))
		return nil, false
	}
	a, err := h.agentClient(c.Request.Context(), ws)
	if err != nil {
		apierror.Respond(c, apierror.Newf(http.StatusConflict, CodeNotReady, "the workspace has no running pod (status %s)", status(ws)))
		return nil, false
	}
	return a, true
}

// callerStatus is the status the caller gets for an agent's refusal that
// is the caller's to fix. Any other answer of the agent (its 5xx, a 401, a
// redirect, a code it should not send) is the operator's problem and a
// 502, and the agent's own words reach only the log.
func callerStatus(code string) (int, bool) {
	switch code {
	case agentapi.CodeBadRequest, agentapi.CodeInvalidJSON, agentapi.CodePathNotAllowed, agentapi.CodeInvalidCwd,
		agentapi.CodeIsDirectory, agentapi.CodeInvalidTar, agentapi.CodeStartFailed:
		return http.StatusBadRequest, true
	case agentapi.CodeForbidden:
		return http.StatusForbidden, true
	case agentapi.CodeNotFound:
		return http.StatusNotFound, true
	case agentapi.CodeConflict:
		return http.StatusConflict, true
	case agentapi.CodeBodyTooLarge:
		return http.StatusRequestEntityTooLarge, true
	case agentapi.CodeOffsetOutOfRange:
		return http.StatusRequestedRangeNotSatisfiable, true
	}
	return 0, false
}

// agentError answers for a failed agent call. A refusal callerStatus knows is
// passed on with its code and the agent's message as agentapi cleaned it
// (bounded, no control characters); anything else is a 502 with a message
// of our own, and the detail (capped) is logged.
func (h *Handler) agentError(c *gin.Context, err error) {
	apierror.Respond(c, h.agentFailure(c.Request.Context(), err))
}

func (h *Handler) agentFailure(ctx context.Context, err error) *apierror.Error {
	var ae *agentapi.Error
	if errors.As(err, &ae) {
		if status, ok := callerStatus(ae.Code); ok && ae.Status >= 400 && ae.Status < 500 {
			msg := ae.Message
			if msg == "" {
				msg = "the workspace agent refused the request"
			}
			return apierror.New(status, ae.Code, msg)
		}
		h.Log.ErrorContext(ctx, "workspace agent call failed", "status", ae.Status, "code", ae.Code,
			"message", ae.Message, "body", fmt.Sprintf("%q", ae.Detail))
		return apierror.Newf(http.StatusBadGateway, CodeAgentUnavailable, "the workspace agent failed (%d %s)", ae.Status, ae.Code)
	}
	detail := err.Error()
	h.Log.ErrorContext(ctx, "workspace agent call failed", "error", detail[:min(len(detail), 1024)])
	msg := "the workspace agent did not answer"
	switch {
	case errors.Is(err, agentapi.ErrTooLarge):
		msg = "the workspace agent's answer was larger than the operator accepts"
	case errors.Is(err, context.DeadlineExceeded):
		msg = "the workspace agent did not answer in time"
	}
	return apierror.New(http.StatusBadGateway, CodeAgentUnavailable, msg)
}

// ExecResponse is the seed's exec answer plus truncation flags.
type ExecResponse struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMS      int64  `json:"duration_ms"`
}

// MaxArg is the longest command or argv element: the kernel runs none
// longer (MAX_ARG_STRLEN), so a longer one is refused here with a clear
// 400 rather than failing to start.
const MaxArg = 128 << 10

func validArg(field, s string) error {
	if len(s) >= MaxArg {
		return apierror.BadRequest("%s: an argument of %d bytes is longer than the %d the kernel runs", field, len(s), MaxArg-1)
	}
	return nil
}

// parseExec reads and checks an exec body.
func parseExec(r *http.Request) (agentapi.ExecRequest, error) {
	var req agentapi.ExecRequest
	if err := apierror.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if strings.TrimSpace(req.Command) == "" {
		return req, apierror.BadRequest("command is required")
	}
	if err := validArg("command", req.Command); err != nil {
		return req, err
	}
	if req.TimeoutSecs < 0 || req.TimeoutSecs > agentapi.MaxExecTimeoutSecs {
		return req, apierror.BadRequest("timeout_secs must be between 1 and %d (default %d)", agentapi.MaxExecTimeoutSecs, agentapi.DefaultExecTimeoutSecs)
	}
	return req, validEnv(req.Env)
}

func (h *Handler) exec(c *gin.Context) {
	req, err := parseExec(c.Request)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	ws, ok := h.find(c)
	if !ok {
		return
	}
	t, err := h.target(c.Request.Context(), ws)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	cwd, err := t.cwd(req.Cwd)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	req.Cwd, req.Env = cwd, t.env(req.Env)
	a, ok := h.agentFor(c, ws, true)
	if !ok {
		return
	}
	out, err := a.ExecStream(c.Request.Context(), req, h.execMaxOutput())
	if err != nil {
		h.agentError(c, err)
		return
	}
	defer out.Close()
	h.writeExec(c, out)
}

// writeExec writes an ExecResponse from the agent's answer as it reads it,
// so that memory does not grow with the output. Once the 200 is out, a
// stream that breaks is closed where it broke and marked truncated: the
// caller always gets valid JSON.
func (h *Handler) writeExec(c *gin.Context, out *agentapi.ExecOutput) {
	hd := out.Head
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	w := bufio.NewWriterSize(c.Writer, 32<<10)
	fmt.Fprintf(w, `{"exit_code":%d,"stdout":"`, hd.ExitCode)
	outErr := copyJSONString(w, out.Stdout())
	w.WriteString(`","stderr":"`)
	errErr := copyJSONString(w, out.Stderr())
	fmt.Fprintf(w, `","timed_out":%t,"stdout_truncated":%t,"stderr_truncated":%t,"duration_ms":%d}`,
		hd.TimedOut, hd.StdoutTruncated || outErr != nil, hd.StderrTruncated || errErr != nil, hd.DurationMS)
	if err := errors.Join(outErr, errErr); err != nil && c.Request.Context().Err() == nil {
		h.Log.WarnContext(c.Request.Context(), "exec output from the agent broke off; answered what arrived, marked truncated", "error", err.Error())
	}
	_ = w.Flush() // the caller may be gone; nothing to do then
}

// copyJSONString copies r into w as the inside of a JSON string and
// returns a read error of r (a write error ends it silently: the caller
// is gone).
func copyJSONString(w io.Writer, r io.Reader) error {
	s := newJSONString(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return nil
			}
		}
		if err != nil {
			_ = s.Close()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// initLogLines is how much of the log the endpoint returns by default, as
// the original.
const initLogLines = 500

// initLogQuery is what GET /init-log was asked for: without offset the
// last lines (as the original), with it a page from there.
type initLogQuery struct {
	paged  bool
	offset int64
	limit  int64
}

// parseInitLogQuery reads ?offset=N&limit=L of GET /init-log; limit is
// at most agentapi.MaxInitLogPage (the default).
func parseInitLogQuery(v url.Values) (initLogQuery, error) {
	q := initLogQuery{limit: agentapi.MaxInitLogPage}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, apierror.BadRequest("offset must be a byte offset (a whole number ≥ 0)")
		}
		q.paged, q.offset = true, n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > agentapi.MaxInitLogPage {
			return q, apierror.BadRequest("limit must be a number of bytes from 1 to %d", agentapi.MaxInitLogPage)
		}
		q.limit = n
	}
	return q, nil
}

// initLog answers the init log: by default its last 500 lines within its
// last MiB, else the page asked for. The agent's page is passed on as it
// arrives, never held.
func (h *Handler) initLog(c *gin.Context) {
	q, err := parseInitLogQuery(c.Request.URL.Query())
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	ws, ok := h.find(c)
	if !ok {
		return
	}
	const logPath = "/workspace/.sortie/init.log"
	if ws.Spec.Type != v1alpha1.TypeContainer || ws.Status.PodName == "" {
		c.JSON(http.StatusOK, gin.H{"exists": false, "content": "", "total_lines": 0, "log_path": logPath,
			"size": 0, "offset": 0, "next_offset": 0, "truncated": false})
		return
	}
	a, ok := h.agentFor(c, ws, false)
	if !ok {
		return
	}
	aq := agentapi.InitLogQuery{Offset: q.offset, Limit: q.limit}
	if !q.paged {
		aq.TailLines = initLogLines
	}
	l, body, err := a.InitLogPage(c.Request.Context(), aq)
	if err != nil {
		h.agentError(c, err)
		return
	}
	defer body.Close()
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	w := bufio.NewWriterSize(c.Writer, 32<<10)
	// truncated: the content is not the whole log.
	truncated := l.Offset > 0 || (q.paged && l.Next < l.Size)
	fmt.Fprintf(w, `{"exists":%t,"log_path":%q,"size":%d,"offset":%d,"next_offset":%d,"truncated":%t,"content":"`,
		l.Size > 0, logPath, l.Size, l.Offset, l.Next, truncated)
	s := newJSONString(w)
	_, err = io.Copy(s, body)
	_ = s.Close()
	lines := l.Lines
	if lines < 0 {
		// Too large for the agent to count: the lines we have.
		lines = s.Lines + int64(b2i(l.Next > l.Offset))
	}
	fmt.Fprintf(w, `","total_lines":%d}`, lines)
	if err != nil && c.Request.Context().Err() == nil {
		h.Log.WarnContext(c.Request.Context(), "init log from the agent broke off", "error", err.Error())
	}
	_ = w.Flush()
}

// rerunInit runs the init script again and answers when it has finished,
// as the original did (bounded by the request and a 10-minute ceiling).
func (h *Handler) rerunInit(c *gin.Context) {
	ws, ok := h.find(c)
	if !ok {
		return
	}
	if ws.Spec.Type != v1alpha1.TypeContainer {
		apierror.Respond(c, apierror.New(http.StatusBadRequest, CodeNotContainer, "host workspaces have no init script; only container workspaces run one"))
		return
	}
	a, ok := h.agentFor(c, ws, false)
	if !ok {
		return
	}
	start := time.Now()
	st, err := a.RerunInit(c.Request.Context())
	if err != nil {
		h.agentError(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Minute)
	defer cancel()
	for st.State == agentapi.InitRunning || st.State == agentapi.InitPending {
		select {
		case <-ctx.Done():
			apierror.Respond(c, apierror.New(http.StatusGatewayTimeout, "timeout", "the init script is still running; poll GET /init-log"))
			return
		case <-time.After(200 * time.Millisecond):
		}
		if st, err = a.InitStatus(ctx); err != nil {
			h.agentError(c, err)
			return
		}
	}
	// Let the controller see the new result now rather than at its next
	// periodic look.
	_, _ = h.modify(c.Request.Context(), ws.Name, func(w *v1alpha1.Workspace) error {
		if w.Annotations == nil {
			w.Annotations = map[string]string{}
		}
		w.Annotations["sortie.dev/init-rerun"] = time.Now().UTC().Format(time.RFC3339Nano)
		return nil
	})
	c.JSON(http.StatusOK, gin.H{
		"success": st.State == agentapi.InitSucceeded, "exit_code": st.ExitCode,
		"duration_secs": time.Since(start).Seconds(), "runs": st.Runs,
	})
}

func (h *Handler) debug(c *gin.Context) {
	ws, ok := h.find(c)
	if !ok {
		return
	}
	conds := make([]gin.H, 0, len(ws.Status.Conditions))
	for _, cd := range ws.Status.Conditions {
		conds = append(conds, gin.H{"type": cd.Type, "status": cd.Status, "reason": cd.Reason, "message": cd.Message,
			"last_transition": cd.LastTransitionTime.UTC().Format(time.RFC3339)})
	}
	out := gin.H{
		"id": h.restID(ws, callerOf(c)), "name": ws.Spec.DisplayName, "status": status(ws), "workspace_type": string(ws.Spec.Type),
		"path": toREST(ws, "").Path, "owner": strPtr(ws.Spec.Owner), "distro": strPtr(string(ws.Spec.Distro)), "image": ws.Status.Image,
		"resource": ws.Namespace + "/" + ws.Name, "pod_name": ws.Status.PodName, "conditions": conds,
		"last_error": strPtr(ws.Status.LastError), "init_exit_code": ws.Status.InitExitCode, "stages": ws.Status.Stages,
	}
	pod := &corev1.Pod{}
	if ws.Status.PodName != "" && h.Client.Get(c.Request.Context(), client.ObjectKey{Namespace: ws.Namespace, Name: ws.Status.PodName}, pod) == nil {
		out["pod"] = gin.H{"phase": pod.Status.Phase, "ip": pod.Status.PodIP, "node": pod.Spec.NodeName,
			"created_at": pod.CreationTimestamp.UTC().Format(time.RFC3339)}
	}
	c.JSON(http.StatusOK, out)
}
