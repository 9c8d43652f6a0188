package rest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// The process API lets mission-control run agent CLIs as detached
// processes in a workspace and follow their output from a stored offset,
// so a turn survives the restart of whoever watches it.

func (h *Handler) registerProcesses(g *gin.RouterGroup) {
	g.POST("/:id/processes", h.startProcess)
	g.GET("/:id/processes", h.listProcesses)
	g.GET("/:id/processes/:pid", h.getProcess)
	g.GET("/:id/processes/:pid/output", h.processOutput)
	g.POST("/:id/processes/:pid/signal", h.signalProcess)
	g.DELETE("/:id/processes/:pid", h.deleteProcess)
}

// agentOf resolves the workspace and its agent; it answers the request
// itself when it cannot.
func (h *Handler) agentOf(c *gin.Context) (*agentapi.Client, target, bool) {
	ws, ok := h.find(c)
	if !ok {
		return nil, target{}, false
	}
	a, ok := h.agentFor(c, ws, true)
	return a, target{ws: ws}, ok
}

// reply answers with the caller's view of a process.
func reply(c *gin.Context, status int, t target, p *agentapi.Process) {
	out, _ := t.fromAgent(*p)
	c.JSON(status, out)
}

// parseStartProcess reads and checks a process start body.
func parseStartProcess(r *http.Request) (agentapi.StartProcessRequest, error) {
	var req agentapi.StartProcessRequest
	if err := apierror.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if req.Command == "" && len(req.Argv) == 0 {
		return req, apierror.BadRequest("command or argv is required")
	}
	if err := validArg("command", req.Command); err != nil {
		return req, err
	}
	for _, a := range req.Argv {
		if err := validArg("argv", a); err != nil {
			return req, err
		}
	}
	return req, validEnv(req.Env)
}

func (h *Handler) startProcess(c *gin.Context) {
	req, err := parseStartProcess(c.Request)
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
	if req.ID, err = t.newProcessID(req.ID); err != nil {
		apierror.Respond(c, err)
		return
	}
	if req.Cwd, err = t.cwd(req.Cwd); err != nil {
		apierror.Respond(c, err)
		return
	}
	req.Env = t.env(req.Env)
	a, ok := h.agentFor(c, ws, true)
	if !ok {
		return
	}
	p, err := a.StartProcess(c.Request.Context(), req)
	if err != nil {
		h.agentError(c, err)
		return
	}
	reply(c, http.StatusCreated, t, p)
}

func (h *Handler) listProcesses(c *gin.Context) {
	a, t, ok := h.agentOf(c)
	if !ok {
		return
	}
	all, err := a.ListProcesses(c.Request.Context())
	if err != nil {
		h.agentError(c, err)
		return
	}
	list := []agentapi.Process{}
	for _, p := range all {
		if p, mine := t.fromAgent(p); mine {
			list = append(list, p)
		}
	}
	c.JSON(http.StatusOK, gin.H{"processes": list})
}

func (h *Handler) getProcess(c *gin.Context) {
	a, t, ok := h.agentOf(c)
	if !ok {
		return
	}
	p, err := a.GetProcess(c.Request.Context(), t.agentID(c.Param("pid")))
	if err != nil {
		h.agentError(c, err)
		return
	}
	reply(c, http.StatusOK, t, p)
}

// MaxOutputLimit is the largest limit= of a read of process output.
const MaxOutputLimit = 64 << 20

// parseOutputQuery reads ?offset=N&follow=bool&limit=L of a read of
// process output; anything else than what they can be is a 400.
func parseOutputQuery(v url.Values) (agentapi.OutputQuery, error) {
	var q agentapi.OutputQuery
	if s := v.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, apierror.BadRequest("offset must be a byte offset (a whole number ≥ 0)")
		}
		q.Offset = n
	}
	if s := v.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, apierror.BadRequest("follow must be true or false")
		}
		q.Follow = b
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > MaxOutputLimit {
			return q, apierror.BadRequest("limit must be a number of bytes from 1 to %d", MaxOutputLimit)
		}
		q.Limit = n
	}
	return q, nil
}

// processOutput relays the agent's NDJSON stream, an event at a time (each
// checked and bounded by the client). With follow=true it is a long-lived
// stream: kit ends it cleanly when the server shuts down, and the client
// resumes from the last offset it saw. limit= makes it a page.
func (h *Handler) processOutput(c *gin.Context) {
	q, err := parseOutputQuery(c.Request.URL.Query())
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	a, t, ok := h.agentOf(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if q.Follow {
		ctx = server.StreamContext(c)
	}
	started := false
	enc := json.NewEncoder(c.Writer)
	for ev, err := range a.FollowOutput(ctx, t.agentID(c.Param("pid")), q) {
		if err != nil {
			if !started {
				h.agentError(c, err)
				return
			}
			// Mid-stream: the client resumes from its last offset.
			if ctx.Err() == nil {
				h.Log.WarnContext(ctx, "process output stream from the agent ended", "error", err.Error())
			}
			return
		}
		if !started {
			c.Header("Content-Type", "application/x-ndjson")
			c.Header("Cache-Control", "no-store")
			c.Header("X-Accel-Buffering", "no")
			c.Status(http.StatusOK)
			started = true
		}
		if enc.Encode(ev) != nil {
			return
		}
		c.Writer.Flush()
	}
	if !started {
		c.Header("Content-Type", "application/x-ndjson")
		c.Status(http.StatusOK)
	}
}

func (h *Handler) signalProcess(c *gin.Context) {
	var req agentapi.SignalRequest
	if err := apierror.DecodeJSON(c.Request, &req); err != nil {
		apierror.Respond(c, err)
		return
	}
	a, t, ok := h.agentOf(c)
	if !ok {
		return
	}
	if err := a.Signal(c.Request.Context(), t.agentID(c.Param("pid")), req.Signal); err != nil {
		h.agentError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *Handler) deleteProcess(c *gin.Context) {
	a, t, ok := h.agentOf(c)
	if !ok {
		return
	}
	if err := a.DeleteProcess(c.Request.Context(), t.agentID(c.Param("pid"))); err != nil {
		h.agentError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
