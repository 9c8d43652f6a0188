// Package httpapi serves mission-control's REST API: missions, the control
// session (messages, queue, cancel), the event stream, providers and
// health, with the seed's paths and payloads.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/control"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
	"sortie.dev/services/mission-control/internal/missions"
	"sortie.dev/services/mission-control/internal/providers"
	"sortie.dev/services/mission-control/internal/sse"
	"sortie.dev/services/mission-control/internal/streamcap"
	"sortie.dev/services/mission-control/internal/workspaces"
)

// DefaultWorkspace is the id of the default host workspace.
const DefaultWorkspace = "00000000-0000-0000-0000-000000000000"

// Workspaces is the workspace-operator: workspaces are looked up only as a
// user (As: a delegated token for them), the health check with the
// service's own token.
type Workspaces interface {
	As(user string) *workspaces.User
	Ping(ctx context.Context) error
}

// Runner starts turns and reports the control status.
type Runner interface {
	Kick(ctx context.Context, user string) error
	Status(ctx context.Context, user string) (event.Event, error)
	Snapshot(ctx context.Context, user string) error
}

// Handler holds the API's dependencies.
type Handler struct {
	Missions   *missions.Store
	Events     *events.Store
	Control    *control.Store
	Providers  *providers.Store
	Workspaces Workspaces
	Runner     Runner
	Stream     *sse.Stream
	// Ping checks Redis for /api/health.
	Ping func(ctx context.Context) error
	// Dependencies are the other services /api/health checks (health.go).
	Dependencies []Dependency

	DefaultBackend    string
	MaxRunningPerUser int
	AuthMode          config.AuthMode
	DevMode           bool
	// Limits bound messages and pages; Streams caps each user's open
	// event streams.
	Limits  config.Limits
	Streams *streamcap.Limiter
	// Log reports what a request cannot tell its client.
	Log *slog.Logger
}

// Codes of this API's own refusals.
const (
	CodeQueueFull       = "queue_full"
	CodeTooManyStreams  = "too_many_streams"
	CodeMessageTooLarge = "message_too_large"
)

// retryQueue and retryStream are the Retry-After of a full queue and of a
// stream past the cap: a turn takes seconds, and a closed tab frees its
// slot at once.
const (
	retryQueue  = 10 * time.Second
	retryStream = 10 * time.Second
)

// respond writes err as the error shape. Redis at maxmemory is 503
// storage_full with Retry-After: the write was refused whole, nothing
// stored changed and reads go on working. A full queue is 429 queue_full.
// Anything else is apierror.Respond's.
func respond(c *gin.Context, err error) {
	var full *control.QueueFullError
	switch {
	case redisconn.IsOOM(err):
		_ = c.Error(err)
		err = apierror.StorageFull("cannot save this")
	case errors.As(err, &full):
		err = apierror.New(http.StatusTooManyRequests, CodeQueueFull,
			full.Error()+"; wait for the mission to take them, or remove some (DELETE /api/control/queue/{id})").WithRetryAfter(retryQueue)
	}
	apierror.Respond(c, err)
}

// Register installs every route. The stream authenticates on its own: a
// browser EventSource cannot send headers, so it also accepts ?token=.
func (h *Handler) Register(e *gin.Engine, a *authn.Authenticator) {
	e.GET("/api/control/stream", a.RequireStream("token"), h.stream)
	e.GET("/api/health", h.health)
	g := e.Group("/api", a.Require())
	c := g.Group("/control")
	c.POST("/message", h.message)
	c.POST("/cancel", h.cancelCurrent)
	c.GET("/queue", h.queue)
	c.DELETE("/queue", h.clearQueue)
	c.DELETE("/queue/:id", h.removeQueued)
	c.GET("/tree", h.tree)
	c.GET("/missions", h.listMissions)
	c.POST("/missions", h.createMission)
	c.GET("/missions/current", h.currentMission)
	c.GET("/missions/:id", h.getMission)
	c.DELETE("/missions/:id", h.deleteMission)
	c.GET("/missions/:id/events", h.missionEvents)
	c.GET("/missions/:id/tree", h.missionTree)
	c.POST("/missions/:id/load", h.loadMission)
	c.POST("/missions/:id/status", h.setStatus)
	c.POST("/missions/:id/cancel", h.cancelMission)
	c.POST("/missions/:id/resume", h.resumeMission)
	g.GET("/providers", h.listProviders)
	g.POST("/providers/:id/auth", h.setProviderAuth)
	g.DELETE("/providers/:id/auth", h.deleteProviderAuth)
}

func user(c *gin.Context) string {
	id, _ := authn.FromContext(c.Request.Context())
	return id.UserID
}

func nonEmpty(s *string) *string {
	if s == nil || strings.TrimSpace(*s) == "" {
		return nil
	}
	v := strings.TrimSpace(*s)
	return &v
}

// reach is who, besides its owner, may act on a mission.
type reach int

const (
	// ownerOnly: nobody else. Loading, messaging, resuming, changing the
	// status of or deleting a mission starts or changes work that runs in
	// its owner's workspace with its owner's credentials.
	ownerOnly reach = iota
	// adminWatch: an admin too, who may read a mission (object, events,
	// stream) and cancel it, as they may any user's workspace.
	adminWatch
)

// mission loads the mission named by :id for the caller, answering the
// error itself.
func (h *Handler) mission(c *gin.Context, r reach) (*missions.Mission, bool) {
	m, err := h.find(c.Request.Context(), c.Param("id"), r)
	if err != nil {
		respond(c, err)
		return nil, false
	}
	return m, true
}

// find loads mission id for the caller of ctx. Another user's mission is
// 404 not_found, exactly as a mission that does not exist (no existence
// oracle), except to an admin: they may reach it as r allows, and are told
// 403 forbidden for what it does not.
func (h *Handler) find(ctx context.Context, id string, r reach) (*missions.Mission, error) {
	caller, _ := authn.FromContext(ctx)
	m, err := h.Missions.Get(ctx, caller.UserID, id)
	if errors.Is(err, missions.ErrNotFound) && caller.IsAdmin() {
		m, err = h.Missions.Load(ctx, id)
		if err == nil && r != adminWatch {
			return nil, apierror.Forbidden(fmt.Sprintf("mission %s belongs to another user: an admin may read it, its events and its stream, and cancel it; only its owner can load, message, resume, change or delete it", id))
		}
	}
	if errors.Is(err, missions.ErrNotFound) {
		return nil, apierror.NotFound("mission %s not found", id)
	}
	return m, err
}

func (h *Handler) createMission(c *gin.Context) {
	req, err := DecodeCreate(c.Request)
	if err != nil {
		respond(c, err)
		return
	}
	m, err := h.newMission(c, user(c), req)
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

// newMission creates a mission from req, which DecodeCreate has checked.
func (h *Handler) newMission(c *gin.Context, uid string, req createRequest) (*missions.Mission, error) {
	m := &missions.Mission{UserID: uid, Title: nonEmpty(req.Title), Agent: nonEmpty(req.Agent),
		ModelOverride: nonEmpty(req.ModelOverride), ModelEffort: nonEmpty(req.ModelEffort), Backend: h.DefaultBackend,
		WorkspaceID: DefaultWorkspace, History: []missions.Message{}}
	if b := nonEmpty(req.Backend); b != nil {
		m.Backend = *b
	}
	if w := nonEmpty(req.WorkspaceID); w != nil {
		m.WorkspaceID = *w
	}
	ws, err := h.workspace(c, uid, m.WorkspaceID)
	if err != nil {
		return nil, err
	}
	m.WorkspaceName = ws.Name
	// Claude Code takes the session id from us, so it is known before the
	// first turn; the other CLIs report theirs.
	if m.Backend == "claudecode" {
		m.SessionID = missions.NewID()
	}
	if err := h.Missions.CreateCurrent(c.Request.Context(), m); err != nil {
		return nil, err
	}
	return m, nil
}

// workspace looks up, as user uid (a delegated token for them: the
// operator decides what they may see), the workspace a mission of theirs
// is created in or messaged in. An unknown workspace and one the user
// cannot see are both 404 not_found; another user's workspace that an
// admin sees is 403 (a mission runs only in its owner's workspaces, so that
// its processes, output, directory and credentials stay with its owner).
func (h *Handler) workspace(c *gin.Context, uid, id string) (*workspaces.Workspace, error) {
	ws, err := h.Workspaces.As(uid).Get(c.Request.Context(), id)
	var ie *workspaces.IdentityError
	switch {
	case errors.Is(err, workspaces.ErrNotFound):
		return nil, apierror.NotFound("workspace %s not found", id)
	case errors.As(err, &ie):
		_ = c.Error(err)
		return nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "cannot act for you at the workspace service: the auth service gave no token on your behalf; retry shortly")
	case err != nil:
		_ = c.Error(err)
		return nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "cannot reach the workspace service; retry shortly")
	case !ws.UsableBy(uid):
		return nil, apierror.Forbidden(fmt.Sprintf("workspace %s belongs to another user: a mission runs only in its owner's workspaces", id))
	}
	return ws, nil
}

func (h *Handler) listMissions(c *gin.Context) {
	limit, offset, err := Paging(c.Query("limit"), c.Query("offset"), config.MissionsPageDefault, config.MissionsPageMax)
	if err != nil {
		respond(c, err)
		return
	}
	list, total, err := h.Missions.List(c.Request.Context(), user(c), limit, offset)
	if err != nil {
		respond(c, err)
		return
	}
	c.Header("X-Total-Count", strconv.FormatInt(total, 10))
	c.JSON(http.StatusOK, list)
}

// maxOffset bounds offset, so that offset+limit cannot overflow: past it
// every list is empty anyway.
const maxOffset = 1 << 31

// Paging reads the limit and offset query parameters. A missing limit is
// def; a limit above maxLimit is clamped to it (the original server had no
// maximum, and its clients must keep working: they page with offset); a
// limit that is not a whole number of at least 1, or an offset that is not
// a whole number of at least 0, is 400 bad_request.
func Paging(limitParam, offsetParam string, def, maxLimit int) (limit, offset int, err error) {
	limit = def
	if limitParam != "" {
		n, err := strconv.Atoi(limitParam)
		if err != nil && !errors.Is(err, strconv.ErrRange) || n < 1 {
			return 0, 0, apierror.BadRequest("limit must be a whole number of at least 1 (at most %d are returned)", maxLimit)
		}
		limit = n
	}
	limit = min(limit, maxLimit)
	if offsetParam != "" {
		n, err := strconv.Atoi(offsetParam)
		if err != nil && !errors.Is(err, strconv.ErrRange) || n < 0 {
			return 0, 0, apierror.BadRequest("offset must be a whole number ≥ 0")
		}
		offset = min(n, maxOffset)
	}
	return limit, offset, nil
}

// historyLen is how many messages a mission's history holds, as the
// original sends: the last 200.
const historyLen = 200

func (h *Handler) withHistory(c *gin.Context, m *missions.Mission) (*missions.Mission, error) {
	evs, err := h.Events.Conversation(c.Request.Context(), m.ID, historyLen, nil)
	if err != nil {
		return nil, err
	}
	hist := make([]missions.Message, 0, len(evs))
	for _, e := range evs {
		role := "assistant"
		if e.Kind == event.KindUserMessage {
			role = "user"
		}
		hist = append(hist, missions.Message{Role: role, Content: e.Content})
	}
	m.History = hist
	return m, nil
}

func (h *Handler) getMission(c *gin.Context) {
	m, ok := h.mission(c, adminWatch)
	if !ok {
		return
	}
	m, err := h.withHistory(c, m)
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (h *Handler) currentMission(c *gin.Context) {
	id, err := h.Missions.Current(c.Request.Context(), user(c))
	if err != nil {
		respond(c, err)
		return
	}
	if id == "" {
		c.JSON(http.StatusOK, nil)
		return
	}
	m, err := h.Missions.Get(c.Request.Context(), user(c), id)
	if errors.Is(err, missions.ErrNotFound) {
		c.JSON(http.StatusOK, nil)
		return
	}
	if err != nil {
		respond(c, err)
		return
	}
	if m, err = h.withHistory(c, m); err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (h *Handler) loadMission(c *gin.Context) {
	m, ok := h.mission(c, ownerOnly)
	if !ok {
		return
	}
	if err := h.Missions.SetCurrent(c.Request.Context(), user(c), m.ID); err != nil {
		respond(c, err)
		return
	}
	m, err := h.withHistory(c, m)
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

// finishingWait bounds how long a request waits for the driver of a turn
// that has ended to drop its run.
const finishingWait = 5 * time.Second

// settledRun is the mission's run, if it still has one. A turn's last
// status is stored a moment before its driver drops the run, so a client
// that saw the mission stop being active must not be told it is running:
// for a mission that is no longer active, a run still there is waited out
// (briefly; a driver that stays is reported as running).
func (h *Handler) settledRun(ctx context.Context, m *missions.Mission) (*control.Run, error) {
	run, err := h.Control.Run(ctx, m.ID)
	if err != nil || run == nil || m.Status == missions.Active {
		return run, err
	}
	deadline := time.NewTimer(finishingWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return run, nil
		case <-tick.C:
		}
		if run, err = h.Control.Run(ctx, m.ID); err != nil || run == nil {
			return run, err
		}
	}
}

func (h *Handler) deleteMission(c *gin.Context) {
	m, ok := h.mission(c, ownerOnly)
	if !ok {
		return
	}
	run, err := h.settledRun(c.Request.Context(), m)
	if err != nil {
		respond(c, err)
		return
	}
	if run != nil {
		respond(c, apierror.New(http.StatusConflict, apierror.CodeConflict, "Cannot delete a running mission. Cancel it first."))
		return
	}
	uid := user(c)
	for _, fn := range []func() error{
		func() error { return h.Control.DeleteMission(c.Request.Context(), uid, m.ID) },
		func() error { return h.Events.DeleteMission(c.Request.Context(), m.ID) },
		func() error { return h.Missions.Delete(c.Request.Context(), uid, m.ID) },
	} {
		if err := fn(); err != nil {
			respond(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"ok": true, "deleted": m.ID})
}

// append stores an event the API emits (outside a run).
func (h *Handler) append(c *gin.Context, e event.Event) error {
	_, _, err := h.Events.Append(c.Request.Context(), e, events.AppendOptions{UserID: user(c)})
	return err
}

func (h *Handler) setStatus(c *gin.Context) {
	st, err := DecodeStatus(c.Request)
	if err != nil {
		respond(c, err)
		return
	}
	m, ok := h.mission(c, ownerOnly)
	if !ok {
		return
	}
	if _, err := h.Missions.SetStatus(c.Request.Context(), m.ID, st, ""); err != nil {
		respond(c, err)
		return
	}
	if err := h.append(c, event.Event{Kind: event.KindMissionStatusChanged, MissionID: m.ID, Status: string(st)}); err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

func (h *Handler) message(c *gin.Context) {
	req, err := DecodeMessage(c.Request, h.Limits.MessageBytes)
	if err != nil {
		respond(c, err)
		return
	}
	uid := user(c)
	var m *missions.Mission
	target := ""
	if id := nonEmpty(req.MissionID); id != nil {
		target = *id
	} else {
		cur, err := h.Missions.Current(c.Request.Context(), uid)
		if err != nil {
			respond(c, err)
			return
		}
		target = cur
	}
	if target != "" {
		var err error
		m, err = h.Missions.Get(c.Request.Context(), uid, target)
		if errors.Is(err, missions.ErrNotFound) {
			if nonEmpty(req.MissionID) != nil {
				respond(c, apierror.NotFound("mission %s not found", target))
				return
			}
			m = nil // the current mission was deleted: start a new one
		} else if err != nil {
			respond(c, err)
			return
		}
	}
	if m == nil {
		var err error
		if m, err = h.newMission(c, uid, createRequest{}); err != nil {
			respond(c, err)
			return
		}
	} else if _, err := h.workspace(c, uid, m.WorkspaceID); err != nil {
		// Nothing is stored for a message to a workspace the user
		// cannot (or can no longer) see.
		respond(c, err)
		return
	}
	msg := control.Message{ID: missions.NewID(), Content: req.Content, Agent: nonEmpty(req.Agent), MissionID: m.ID}
	queued, err := h.send(c, uid, msg)
	if err != nil {
		respond(c, err)
		return
	}
	if m.Title == nil {
		// Only once the message is stored: a refused one changes nothing.
		if t := missions.TitleFrom(req.Content); t != "" {
			_, _ = h.Missions.Update(c.Request.Context(), m.ID, func(mm *missions.Mission) error {
				if mm.Title == nil {
					mm.Title = &t
				}
				return nil
			})
		}
	}
	c.JSON(http.StatusOK, gin.H{"id": msg.ID, "queued": queued})
}

// send queues a message, records its user_message and starts it if it can.
// A message refused (its queue is full, Redis is full) leaves nothing
// stored: when its user_message cannot be stored, it is taken out of the
// queue again.
func (h *Handler) send(c *gin.Context, uid string, msg control.Message) (bool, error) {
	ctx := c.Request.Context()
	queued, err := h.Control.Enqueue(ctx, uid, msg, h.MaxRunningPerUser)
	if err != nil {
		return false, err
	}
	if err := h.append(c, event.Event{Kind: event.KindUserMessage, MissionID: msg.MissionID, ID: msg.ID, Content: msg.Content, Queued: queued}); err != nil {
		// The queue may have been started already; a message that is
		// no longer queued runs, and its user_message is re-sent then.
		if _, rerr := h.Control.Remove(context.WithoutCancel(ctx), uid, msg.ID); rerr != nil {
			h.Log.Warn("cannot take back a message whose user_message was not stored", "mission_id", msg.MissionID, "error", rerr.Error())
		}
		return false, err
	}
	if err := h.Runner.Kick(context.WithoutCancel(ctx), uid); err != nil {
		// The message is stored: any replica starts it once it can.
		h.Log.Warn("cannot start the message now; it waits in the queue", "mission_id", msg.MissionID, "error", err.Error())
	}
	return queued, nil
}

func (h *Handler) cancelCurrent(c *gin.Context) {
	uid := user(c)
	cur, err := h.Missions.Current(c.Request.Context(), uid)
	if err != nil {
		respond(c, err)
		return
	}
	ok := false
	if cur != "" {
		if ok, err = h.Control.RequestCancel(c.Request.Context(), cur); err != nil {
			respond(c, err)
			return
		}
	}
	if !ok {
		// Nothing runs: say so on the stream, like the original.
		_ = h.Events.Publish(c.Request.Context(), uid, event.Event{Kind: event.KindError, Message: "No running task to cancel"})
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

func (h *Handler) cancelMission(c *gin.Context) {
	m, ok := h.mission(c, adminWatch)
	if !ok {
		return
	}
	ok, err := h.Control.RequestCancel(c.Request.Context(), m.ID)
	if err != nil {
		respond(c, err)
		return
	}
	if !ok {
		respond(c, apierror.New(http.StatusConflict, apierror.CodeConflict, "mission "+m.ID+" is not running"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true, "cancelled": m.ID})
}

func (h *Handler) resumeMission(c *gin.Context) {
	req, err := DecodeResume(c.Request)
	if err != nil {
		respond(c, err)
		return
	}
	m, ok := h.mission(c, ownerOnly)
	if !ok {
		return
	}
	if !m.Status.Resumable() {
		respond(c, apierror.BadRequest("mission %s is %s and cannot be resumed (only interrupted, blocked or failed missions can)", m.ID, m.Status))
		return
	}
	uid := user(c)
	if !req.SkipMessage {
		if _, err := h.workspace(c, uid, m.WorkspaceID); err != nil {
			respond(c, err)
			return
		}
	}
	if _, err := h.Missions.SetStatus(c.Request.Context(), m.ID, missions.Active, ""); err != nil {
		respond(c, err)
		return
	}
	if err := h.append(c, event.Event{Kind: event.KindMissionStatusChanged, MissionID: m.ID, Status: string(missions.Active)}); err != nil {
		respond(c, err)
		return
	}
	if err := h.Missions.SetCurrent(c.Request.Context(), uid, m.ID); err != nil {
		respond(c, err)
		return
	}
	if !req.SkipMessage {
		prompt := "MISSION RESUMED: the previous turn stopped (" + string(m.Status) + "). Look at the state of the working directory and continue the mission where it stopped."
		if _, err := h.send(c, uid, control.Message{ID: missions.NewID(), Content: prompt, MissionID: m.ID}); err != nil {
			respond(c, err)
			return
		}
	}
	m, err = h.Missions.Get(c.Request.Context(), uid, m.ID)
	if err != nil {
		respond(c, err)
		return
	}
	if m, err = h.withHistory(c, m); err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (h *Handler) queue(c *gin.Context) {
	q, err := h.Control.Queue(c.Request.Context(), user(c))
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, q)
}

func (h *Handler) removeQueued(c *gin.Context) {
	ok, err := h.Control.Remove(c.Request.Context(), user(c), c.Param("id"))
	if err != nil {
		respond(c, err)
		return
	}
	if !ok {
		respond(c, apierror.NotFound("message %s is not in the queue", c.Param("id")))
		return
	}
	_ = h.Runner.Snapshot(c.Request.Context(), user(c))
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

func (h *Handler) clearQueue(c *gin.Context) {
	n, err := h.Control.Clear(c.Request.Context(), user(c))
	if err != nil {
		respond(c, err)
		return
	}
	_ = h.Runner.Snapshot(c.Request.Context(), user(c))
	c.JSON(http.StatusOK, gin.H{"ok": true, "cleared": n})
}

// tree: the CLI backends produce no agent tree (neither did the original's).
func (h *Handler) tree(c *gin.Context) { c.JSON(http.StatusOK, nil) }

func (h *Handler) missionTree(c *gin.Context) {
	if _, ok := h.mission(c, adminWatch); !ok {
		return
	}
	c.JSON(http.StatusOK, nil)
}

// StoredEvent is the reference's stored-event row, which the original
// dashboard rebuilds its view from; metadata holds the whole event.
type StoredEvent struct {
	ID         int64           `json:"id"`
	MissionID  string          `json:"mission_id"`
	Sequence   int64           `json:"sequence"`
	EventType  event.Kind      `json:"event_type"`
	Timestamp  string          `json:"timestamp"`
	EventID    *string         `json:"event_id"`
	ToolCallID *string         `json:"tool_call_id"`
	ToolName   *string         `json:"tool_name"`
	Content    string          `json:"content"`
	Metadata   json.RawMessage `json:"metadata"`
}

func stored(e event.Event) (StoredEvent, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return StoredEvent{}, err
	}
	s := StoredEvent{ID: e.Sequence, MissionID: e.MissionID, Sequence: e.Sequence, EventType: e.Kind,
		Timestamp: e.Time.UTC().Format(time.RFC3339Nano), Metadata: meta}
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	s.EventID, s.ToolCallID, s.ToolName = opt(e.ID), opt(e.ToolCallID), opt(e.ToolName)
	switch e.Kind {
	case event.KindToolCall:
		s.Content = string(e.Args)
	case event.KindToolResult:
		s.Content = string(e.Result)
	case event.KindError:
		s.Content = e.Message
	case event.KindMissionStatusChanged:
		s.Content = e.Summary
	case event.KindMissionActivity:
		s.Content = e.Label
	default:
		s.Content = e.Content
	}
	return s, nil
}

// ParseKinds reads the types query parameter: a comma list of event
// kinds, empty for all.
func ParseKinds(param string) ([]event.Kind, error) {
	var kinds []event.Kind
	for _, t := range strings.Split(param, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !event.Kind(t).Valid() {
			return nil, apierror.BadRequest("unknown event type %q", clipParam(t))
		}
		kinds = append(kinds, event.Kind(t))
	}
	return kinds, nil
}

// clipParam keeps a value echoed in an error short and printable: at most
// 32 characters (quoted with %q, at most 10 bytes each), invalid UTF-8
// replaced.
func clipParam(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if r := []rune(s); len(r) > 32 {
		return string(r[:32]) + "…"
	}
	return s
}

// missionEvents answers a page of stored events. The page is written as it
// is read, a chunk at a time, so its size does not bound the memory it
// takes; limit is clamped to the page maximum (SORTIE_MC_EVENTS_PAGE_MAX).
func (h *Handler) missionEvents(c *gin.Context) {
	kinds, err := ParseKinds(c.Query("types"))
	if err != nil {
		respond(c, err)
		return
	}
	limit, offset, err := Paging(c.Query("limit"), c.Query("offset"), h.Limits.EventsPage, h.Limits.EventsPage)
	if err != nil {
		respond(c, err)
		return
	}
	m, ok := h.mission(c, adminWatch)
	if !ok {
		return
	}
	w := c.Writer
	n := 0
	err = h.Events.Each(c.Request.Context(), m.ID, kinds, limit, offset, func(e event.Event) error {
		s, err := stored(e)
		if err != nil {
			return err
		}
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		sep := ","
		if n == 0 {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			sep = "["
		}
		n++
		if _, err := w.WriteString(sep); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	switch {
	case err != nil && n == 0:
		respond(c, err)
	case err != nil:
		// Part of the page is sent: end the response broken, so the
		// client cannot take it for a whole page.
		_ = c.Error(err)
		panic(http.ErrAbortHandler)
	case n == 0:
		c.JSON(http.StatusOK, []StoredEvent{})
	default:
		_, _ = w.WriteString("]")
	}
}

func (h *Handler) stream(c *gin.Context) {
	uid := user(c)
	last := c.GetHeader("Last-Event-ID")
	if last == "" {
		last = c.Query("last_event_id")
	}
	if last != "" && !events.ValidCursor(last) {
		respond(c, apierror.BadRequest("Last-Event-ID %q is not an event id of this stream", clipParam(last)))
		return
	}
	// The stream is the events of a user's missions: the caller's own, or,
	// for an admin watching one of another user's, that user's (of that
	// mission alone).
	owner, mission := uid, c.Query("mission_id")
	if mission != "" {
		m, err := h.find(c.Request.Context(), mission, adminWatch)
		if err != nil {
			respond(c, err)
			return
		}
		owner = m.UserID
	}
	release, err := h.Streams.Acquire(c.Request.Context(), uid)
	if errors.Is(err, streamcap.ErrFull) {
		respond(c, apierror.Newf(http.StatusTooManyRequests, CodeTooManyStreams,
			"you have %d event streams open, the most one user may (SORTIE_MC_MAX_STREAMS_PER_USER): close one (another tab?) and retry", h.Streams.Max()).WithRetryAfter(retryStream))
		return
	}
	if err != nil {
		respond(c, err)
		return
	}
	// Freed when the client goes away (or the server shuts down).
	defer release()
	snap, err := h.Runner.Status(c.Request.Context(), owner)
	if err != nil {
		respond(c, err)
		return
	}
	ctx := server.StreamContext(c)
	sse.Headers(c.Writer.Header())
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	c.Writer.Flush()
	if err := h.Stream.Serve(ctx, c.Writer, sse.Request{User: owner, LastEventID: last, MissionID: mission, Snapshot: snap}); err != nil && ctx.Err() == nil {
		_ = c.Error(err)
	}
}
