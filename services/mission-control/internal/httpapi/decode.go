package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/missions"
)

// The request decoders: pure functions of the request, each refusing bad
// input with a 4xx *apierror.Error, so they are fuzzed on their own
// (decode_test.go).

// Bounds of the short fields of a mission: names and ids are never long,
// and a title is a line.
const (
	maxTitle = 16 << 10
	maxName  = 256
)

// decodeOptional decodes a body that may be absent or empty (the original
// dashboard sends POSTs without one, or with Content-Type and no body).
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	if err := apierror.DecodeJSON(r, v); err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) && strings.Contains(ae.Message, "empty") {
			return nil
		}
		return err
	}
	return nil
}

type createRequest struct {
	Title         *string `json:"title"`
	WorkspaceID   *string `json:"workspace_id"`
	Agent         *string `json:"agent"`
	ModelOverride *string `json:"model_override"`
	ModelEffort   *string `json:"model_effort"`
	Backend       *string `json:"backend"`
}

// DecodeCreate reads and checks a POST /missions body (which may be
// absent).
func DecodeCreate(r *http.Request) (createRequest, error) {
	var req createRequest
	if err := decodeOptional(r, &req); err != nil {
		return req, err
	}
	return req, req.check()
}

// check validates what a new mission is given.
func (req createRequest) check() error {
	if b := nonEmpty(req.Backend); b != nil && !config.IsBackend(*b) {
		return apierror.BadRequest("unknown backend %q (known: %s)", clipParam(*b), strings.Join(config.Backends, ", "))
	}
	if e := nonEmpty(req.ModelEffort); e != nil {
		if _, err := backend.ParseEffort(*e); err != nil {
			return apierror.BadRequest("model_effort must be low, medium or high, not %q", clipParam(*e))
		}
	}
	if req.Title != nil && len(*req.Title) > maxTitle {
		return apierror.BadRequest("title is %d bytes; at most %d are accepted", len(*req.Title), maxTitle)
	}
	for name, v := range map[string]*string{"workspace_id": req.WorkspaceID, "agent": req.Agent, "model_override": req.ModelOverride} {
		if v != nil && len(*v) > maxName {
			return apierror.BadRequest("%s is %d bytes; at most %d are accepted", name, len(*v), maxName)
		}
	}
	return nil
}

type messageRequest struct {
	Content   string  `json:"content"`
	Agent     *string `json:"agent"`
	MissionID *string `json:"mission_id"`
}

// DecodeMessage reads and checks a POST /message body: content must not
// be blank and must be at most maxBytes long (413 message_too_large).
func DecodeMessage(r *http.Request, maxBytes int) (messageRequest, error) {
	var req messageRequest
	if err := apierror.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if strings.TrimSpace(req.Content) == "" {
		return req, apierror.BadRequest("content must not be empty")
	}
	if len(req.Content) > maxBytes {
		return req, apierror.Newf(http.StatusRequestEntityTooLarge, CodeMessageTooLarge,
			"the message is %d bytes; at most %d are accepted (SORTIE_MC_MAX_MESSAGE_BYTES): send a shorter one, or put the text in a file in the workspace", len(req.Content), maxBytes)
	}
	for name, v := range map[string]*string{"agent": req.Agent, "mission_id": req.MissionID} {
		if v != nil && len(*v) > maxName {
			return req, apierror.BadRequest("%s is %d bytes; at most %d are accepted", name, len(*v), maxName)
		}
	}
	return req, nil
}

// DecodeStatus reads a POST /missions/:id/status body.
func DecodeStatus(r *http.Request) (missions.Status, error) {
	var req struct {
		Status string `json:"status"`
	}
	if err := apierror.DecodeJSON(r, &req); err != nil {
		return "", err
	}
	st := missions.Status(req.Status)
	if !st.Valid() {
		return "", apierror.BadRequest("status must be one of pending, active, completed, failed, interrupted, blocked, not_feasible")
	}
	return st, nil
}

type resumeRequest struct {
	SkipMessage    bool `json:"skip_message"`
	CleanWorkspace bool `json:"clean_workspace"`
}

// DecodeResume reads a POST /missions/:id/resume body (which may be
// absent).
func DecodeResume(r *http.Request) (resumeRequest, error) {
	var req resumeRequest
	return req, decodeOptional(r, &req)
}
