package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"sortie.dev/services/workspace-operator/internal/agent/children"
	"sortie.dev/services/workspace-operator/internal/agent/files"
	"sortie.dev/services/workspace-operator/internal/agent/initscript"
	"sortie.dev/services/workspace-operator/internal/agent/procs"
	"sortie.dev/services/workspace-operator/internal/agent/shell"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// Errors of the HTTP layer itself.
var (
	errInvalidJSON = errors.New("invalid JSON body")
	errBadRequest  = errors.New("bad request")
	errOffset      = errors.New("offset is past the end")
)

// Handler returns the agent's HTTP API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("POST /v1/exec", a.exec)
	mux.HandleFunc("POST /v1/processes", a.startProcess)
	mux.HandleFunc("GET /v1/processes", a.listProcesses)
	mux.HandleFunc("GET /v1/processes/{id}", a.getProcess)
	mux.HandleFunc("DELETE /v1/processes/{id}", a.deleteProcess)
	mux.HandleFunc("GET /v1/processes/{id}/output", a.processOutput)
	mux.HandleFunc("POST /v1/processes/{id}/signal", a.signalProcess)
	mux.HandleFunc("PUT /v1/files", a.putFile)
	mux.HandleFunc("GET /v1/files", a.getFile)
	mux.HandleFunc("DELETE /v1/files", a.deleteFile)
	mux.HandleFunc("POST /v1/files/tar", a.untar)
	mux.HandleFunc("GET /v1/init", a.initStatus)
	mux.HandleFunc("GET /v1/init/log", a.initLog)
	mux.HandleFunc("POST /v1/init/rerun", a.rerunInit)
	mux.HandleFunc("GET /v1/stats", a.getStats)
	return a.observe(a.requireToken(jsonMisses(mux)))
}

// observe logs every request and turns a panic into a 500, so that no panic
// reaches a client as a dropped connection.
func (a *Agent) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic in handler", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, agentapi.CodeInternal, "internal error")
				}
			}
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				level = slog.LevelDebug // probes every few seconds would drown the rest
			}
			a.log.Log(r.Context(), level, "request",
				"method", r.Method, "path", r.URL.Path, "status", sw.code(),
				"duration_ms", time.Since(start).Milliseconds(), "bytes", sw.bytes)
		}()
		next.ServeHTTP(sw, r)
	})
}

// requireToken checks the bearer token on every route but the probes. Both
// sides are hashed first so that the comparison takes the same time whatever
// the length of the guess.
func (a *Agent) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(token))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="workspace-agent"`)
			writeError(w, http.StatusUnauthorized, agentapi.CodeUnauthorized, "missing or invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// jsonMisses answers unknown routes and wrong methods with the JSON error
// shape instead of ServeMux's plain text.
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch {
		case rec.status == http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, agentapi.CodeMethodNotAllowed, "method not allowed")
		case rec.status >= 300 && rec.status < 400:
			mux.ServeHTTP(w, r) // ServeMux's path-cleaning redirect
		default:
			writeError(w, http.StatusNotFound, agentapi.CodeNotFound, "no such route")
		}
	})
}

// decodeJSON reads a bounded JSON body into dst.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err := dec.Decode(dst); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return mbe
		}
		return fmt.Errorf("%w: %w", errInvalidJSON, err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON value", errInvalidJSON)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do then
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, agentapi.ErrorBody{Error: msg, Code: code})
}

// fail answers with the status and code err calls for. This is the one
// place where domain errors become HTTP statuses; anything unknown is a 500
// and is logged, not shown.
func (a *Agent) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	writeError(w, status, code, msg)
}

func classify(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, agentapi.CodeBodyTooLarge
	case errors.Is(err, errInvalidJSON):
		return http.StatusBadRequest, agentapi.CodeInvalidJSON
	case errors.Is(err, children.ErrBadDir):
		return http.StatusBadRequest, agentapi.CodeInvalidCwd
	case errors.Is(err, procs.ErrStart):
		return http.StatusBadRequest, agentapi.CodeStartFailed
	case errors.Is(err, files.ErrNotAllowed):
		return http.StatusBadRequest, agentapi.CodePathNotAllowed
	case errors.Is(err, files.ErrIsDir):
		return http.StatusBadRequest, agentapi.CodeIsDirectory
	case errors.Is(err, files.ErrBadTar):
		return http.StatusBadRequest, agentapi.CodeInvalidTar
	case errors.Is(err, errBadRequest), errors.Is(err, shell.ErrBadTimeout), errors.Is(err, children.ErrBadEnv),
		errors.Is(err, children.ErrBadSignal), errors.Is(err, procs.ErrBadRequest), errors.Is(err, files.ErrBadMode),
		errors.Is(err, syscall.ENOTDIR): // a file where the path needs a directory
		return http.StatusBadRequest, agentapi.CodeBadRequest
	case errors.Is(err, procs.ErrExists), errors.Is(err, procs.ErrRunning), errors.Is(err, procs.ErrNotRunning),
		errors.Is(err, initscript.ErrRunning), errors.Is(err, files.ErrNotEmpty):
		return http.StatusConflict, agentapi.CodeConflict
	case errors.Is(err, procs.ErrOffset), errors.Is(err, errOffset):
		return http.StatusRequestedRangeNotSatisfiable, agentapi.CodeOffsetOutOfRange
	case errors.Is(err, procs.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound, agentapi.CodeNotFound
	case errors.Is(err, fs.ErrPermission):
		// An agent running as a non-root USER meets files it may not touch.
		return http.StatusForbidden, agentapi.CodeForbidden
	}
	return http.StatusInternalServerError, agentapi.CodeInternal
}

// statusWriter records the status and size of a response. Unwrap lets
// http.ResponseController reach the real writer's Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// headerRecorder captures what ServeMux's own 404/405 handlers would send.
type headerRecorder struct {
	header http.Header
	status int
}

func (r *headerRecorder) Header() http.Header         { return r.header }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(code int)        { r.status = code }
