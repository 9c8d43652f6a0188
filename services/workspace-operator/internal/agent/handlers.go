package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"sortie.dev/services/workspace-operator/internal/agent/children"
	"sortie.dev/services/workspace-operator/internal/agent/files"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, agentapi.Health{Status: "ok"})
}

// readyz is the Pod's readiness probe: ready once the init script succeeded.
func (a *Agent) readyz(w http.ResponseWriter, _ *http.Request) {
	st := a.init.Status()
	switch st.State {
	case agentapi.InitSucceeded:
		writeJSON(w, http.StatusOK, agentapi.Readiness{Status: agentapi.ReadyStatusReady})
	case agentapi.InitFailed:
		writeJSON(w, http.StatusServiceUnavailable, agentapi.Readiness{Status: agentapi.ReadyStatusFailed, ExitCode: st.ExitCode})
	default:
		writeJSON(w, http.StatusServiceUnavailable, agentapi.Readiness{Status: agentapi.ReadyStatusInitializing})
	}
}

func (a *Agent) exec(w http.ResponseWriter, r *http.Request) {
	var req agentapi.ExecRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Command == "" {
		a.fail(w, r, fmt.Errorf("%w: command is required", errBadRequest))
		return
	}
	// The request's context: a client that gives up kills its command.
	res, err := a.shell.Run(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !accepts(r, agentapi.ExecStreamType) {
		writeJSON(w, http.StatusOK, res)
		return
	}
	head, err := json.Marshal(agentapi.ExecHead{
		ExitCode: res.ExitCode, Signal: res.Signal, TimedOut: res.TimedOut,
		StdoutBytes: int64(len(res.Stdout)), StderrBytes: int64(len(res.Stderr)),
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated, DurationMS: res.DurationMS,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", agentapi.ExecStreamType)
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+1+len(res.Stdout)+len(res.Stderr)))
	w.WriteHeader(http.StatusOK)
	// The client may be gone; nothing to do then.
	_, _ = w.Write(append(head, '\n'))
	_, _ = io.WriteString(w, res.Stdout)
	_, _ = io.WriteString(w, res.Stderr)
}

// accepts reports whether the request's Accept header names media type mt.
func accepts(r *http.Request, mt string) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(name), mt) {
				return true
			}
		}
	}
	return false
}

func (a *Agent) startProcess(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StartProcessRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.procs.Start(req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("process started", "id", p.ID, "pid", p.PID)
	writeJSON(w, http.StatusCreated, p)
}

func (a *Agent) listProcesses(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, agentapi.ProcessList{Processes: a.procs.List()})
}

func (a *Agent) getProcess(w http.ResponseWriter, r *http.Request) {
	p, err := a.procs.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *Agent) deleteProcess(w http.ResponseWriter, r *http.Request) {
	if err := a.procs.Delete(r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) signalProcess(w http.ResponseWriter, r *http.Request) {
	var req agentapi.SignalRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	sig, err := children.ParseSignal(req.Signal)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.procs.Signal(r.PathValue("id"), sig); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// processOutput streams NDJSON. Errors found before streaming (unknown id,
// offset past the end: 416) get a JSON error; once the 200 is out, a failure
// can only end the stream.
func (a *Agent) processOutput(w http.ResponseWriter, r *http.Request) {
	offset, err := queryInt(r, "offset")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	follow, err := queryBool(r, "follow")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.procs.Output(r.PathValue("id"), offset)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer out.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers now, so a follower of a quiet process knows it is attached
	enc := json.NewEncoder(w)
	err = out.Stream(r.Context(), follow, limit, a.stopping, func(ev agentapi.OutputEvent) error {
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && r.Context().Err() == nil {
		a.log.Warn("output stream ended", "id", r.PathValue("id"), "err", err)
	}
}

func (a *Agent) putFile(w http.ResponseWriter, r *http.Request) {
	mode, err := files.ParseMode(r.URL.Query().Get("mode"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	path, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.files.Put(path, mode, http.MaxBytesReader(w, r.Body, maxFileBody)); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) getFile(w http.ResponseWriter, r *http.Request) {
	path, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, fi, err := a.files.Open(path)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	// ServeContent adds Content-Length, Range and conditional requests.
	http.ServeContent(w, r, filepath.Base(path), fi.ModTime(), f)
}

func (a *Agent) deleteFile(w http.ResponseWriter, r *http.Request) {
	path, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	recursive, err := queryBool(r, "recursive")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.files.Delete(path, recursive); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) untar(w http.ResponseWriter, r *http.Request) {
	dir, err := queryPath(r, "dir")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	replace, err := queryBool(r, "replace")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.files.Untar(dir, replace, http.MaxBytesReader(w, r.Body, maxFileBody), files.DefaultTarLimits)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.TarResult{Files: st.Files, Bytes: st.Bytes})
}

func (a *Agent) initStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.init.Status())
}

func (a *Agent) rerunInit(w http.ResponseWriter, r *http.Request) {
	st, err := a.init.Start()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}

func (a *Agent) getStats(w http.ResponseWriter, r *http.Request) {
	s, err := a.stats.Read()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func queryPath(r *http.Request, key string) (string, error) {
	p := r.URL.Query().Get(key)
	if p == "" {
		return "", fmt.Errorf("%w: query parameter %q is required", errBadRequest, key)
	}
	return p, nil
}

// queryInt reads a non-negative integer; absent means 0.
func queryInt(r *http.Request, key string) (int64, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s must be a non-negative integer", errBadRequest, key)
	}
	return n, nil
}

// queryBool reads true/false (and the other strconv spellings); absent means false.
func queryBool(r *http.Request, key string) (bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s must be true or false", errBadRequest, key)
	}
	return b, nil
}
