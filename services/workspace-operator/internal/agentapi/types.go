// Package agentapi holds the wire types of the workspace-agent HTTP API and a
// small typed client for it. The agent (internal/agent) and its only caller,
// the workspace-operator, both import this package, so the two sides cannot
// drift apart.
//
// Routes (all but the probes need "Authorization: Bearer <token>"):
//
//	GET    /healthz                       200 Health
//	GET    /readyz                        200 or 503 Readiness
//	POST   /v1/exec                       ExecRequest -> 200 ExecResult, or with
//	                                      "Accept: application/vnd.sortie.exec-stream"
//	                                      an ExecHead line and the raw output
//	POST   /v1/processes                  StartProcessRequest -> 201 Process
//	GET    /v1/processes                  200 ProcessList
//	GET    /v1/processes/{id}             200 Process
//	DELETE /v1/processes/{id}             204; 409 while running
//	GET    /v1/processes/{id}/output      ?offset=N&follow=bool&limit=L -> NDJSON of OutputEvent; 416 past the end
//	POST   /v1/processes/{id}/signal      SignalRequest -> 204, to the process group
//	PUT    /v1/files?path=&mode=          raw body -> 204
//	GET    /v1/files?path=                raw body (Range supported)
//	DELETE /v1/files?path=&recursive=     204
//	POST   /v1/files/tar?dir=&replace=    tar or tar.gz body -> 200 TarResult
//	GET    /v1/init                       200 InitStatus
//	GET    /v1/init/log?offset=N&limit=L  text/plain, one page (X-Log-* headers); 416 past the end
//	GET    /v1/init/log?tail_lines=N&limit=L  the last N lines within the last L bytes
//	POST   /v1/init/rerun                 202 InitStatus; 409 while running
//	GET    /v1/stats                      200 Stats
//
// Every error is an ErrorBody with one of the Code constants.
package agentapi

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Error codes carried in ErrorBody.Code.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeBodyTooLarge     = "body_too_large"
	CodePathNotAllowed   = "path_not_allowed"
	CodeInvalidCwd       = "invalid_cwd"
	CodeIsDirectory      = "is_directory"
	CodeInvalidTar       = "invalid_tar"
	CodeStartFailed      = "start_failed"
	CodeOffsetOutOfRange = "offset_out_of_range"
	CodeInternal         = "internal"
)

// ErrorBody is the JSON body of every non-2xx response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// Readiness states reported by GET /readyz.
const (
	ReadyStatusReady        = "ready"
	ReadyStatusInitializing = "initializing"
	ReadyStatusFailed       = "failed"
)

// Readiness is the body of GET /readyz. The endpoint answers 200 only when
// Status is "ready"; ExitCode is set when the init script failed.
type Readiness struct {
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code,omitempty"`
}

// Exec limits.
const (
	DefaultExecTimeoutSecs = 300
	MaxExecTimeoutSecs     = 600
)

// ExecRequest is the body of POST /v1/exec.
type ExecRequest struct {
	// Command is run with /bin/sh -c.
	Command string `json:"command"`
	// Cwd is relative to the agent's workdir, or absolute. Empty means the workdir.
	Cwd string `json:"cwd,omitempty"`
	// TimeoutSecs: 0 means DefaultExecTimeoutSecs; above MaxExecTimeoutSecs is rejected.
	TimeoutSecs int               `json:"timeout_secs,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Stdin       string            `json:"stdin,omitempty"`
}

// ExecStreamType is the media type of the streamed exec answer, asked for
// with Accept. Its body is one line of JSON, an ExecHead, then
// ExecHead.StdoutBytes bytes of stdout and ExecHead.StderrBytes bytes of
// stderr, raw. Unlike JSON it costs no escaping (which can make output six
// times larger) and can be relayed without holding it: the operator reads
// it a buffer at a time.
const ExecStreamType = "application/vnd.sortie.exec-stream"

// MaxExecHead bounds the ExecHead line of a streamed exec answer.
const MaxExecHead = 4 << 10

// ExecHead is the first line of a streamed exec answer: everything of an
// ExecResult but the output itself, and the length of each stream.
type ExecHead struct {
	ExitCode        int    `json:"exit_code"`
	Signal          string `json:"signal,omitempty"`
	TimedOut        bool   `json:"timed_out"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMS      int64  `json:"duration_ms"`
}

// TruncationMarker is appended to a stream of exec output that was cut at
// limit bytes, so that a reader of the text alone sees it is not whole.
func TruncationMarker(limit int64) string {
	return fmt.Sprintf("\n[sortie: output truncated after %d bytes]\n", limit)
}

// ExecResult is the body of a 200 answer to POST /v1/exec.
type ExecResult struct {
	// ExitCode is the command's exit status; -1 when it was killed by a
	// signal (including the kill on timeout) and 127 when it could not start.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that killed the command ("KILL", "TERM", ...).
	Signal          string `json:"signal,omitempty"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMS      int64  `json:"duration_ms"`
}

// StartProcessRequest is the body of POST /v1/processes. Exactly one of
// Command and Argv must be set.
type StartProcessRequest struct {
	// ID is optional; it must match [a-zA-Z0-9_.-]{1,100} (REST callers: {1,64}). The agent makes one up when empty.
	ID string `json:"id,omitempty"`
	// Command is run with /bin/sh -c.
	Command string `json:"command,omitempty"`
	// Argv is run directly; Argv[0] is looked up in PATH.
	Argv  []string          `json:"argv,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Stdin string            `json:"stdin,omitempty"`
}

// Process describes a detached process. POST /v1/processes answers with one
// (201), GET /v1/processes/{id} too.
type Process struct {
	ID      string   `json:"id"`
	PID     int      `json:"pid"`
	Command string   `json:"command"`
	Argv    []string `json:"argv"`
	Cwd     string   `json:"cwd"`
	Running bool     `json:"running"`
	// ExitCode is nil while running, when killed by a signal, and when lost.
	ExitCode *int `json:"exit_code"`
	// Signal is the name of the signal that ended the process, if any.
	Signal     *string    `json:"signal"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// OutputBytes is the current size of the output file.
	OutputBytes int64 `json:"output_bytes"`
	// OutputStart is where the output kept starts: the agent keeps the
	// last SORTIE_AGENT_PROCESS_MAX_OUTPUT bytes of a process's output,
	// and a read from before OutputStart starts there.
	OutputStart int64 `json:"output_start,omitempty"`
	// Lost is true for a process started by an earlier agent incarnation
	// whose end was never recorded.
	Lost bool `json:"lost,omitempty"`
}

// ProcessList is the body of GET /v1/processes.
type ProcessList struct {
	Processes []Process `json:"processes"`
}

// SignalRequest is the body of POST /v1/processes/{id}/signal.
type SignalRequest struct {
	// Signal is one of TERM, KILL, INT, HUP, QUIT, USR1, USR2 (a "SIG" prefix is accepted).
	Signal string `json:"signal"`
}

// MaxOutputChunk is the largest Data of one OutputEvent.
const MaxOutputChunk = 64 << 10

// MaxOutputEventLine bounds one NDJSON line of an output stream: a
// MaxOutputChunk of control characters is six times larger escaped.
const MaxOutputEventLine = 8 * MaxOutputChunk

// OutputEvent is one line of the NDJSON stream of
// GET /v1/processes/{id}/output. A data event carries the bytes that start at
// Offset in the output file: in Data when they are valid UTF-8, otherwise in
// DataBase64, so that a client can always resume at End(). The last event of a
// stream for an exited process has EOF set, Offset at the end of the output,
// and the exit status.
type OutputEvent struct {
	Offset     int64   `json:"offset"`
	Data       string  `json:"data,omitempty"`
	DataBase64 []byte  `json:"data_b64,omitempty"`
	EOF        bool    `json:"eof,omitempty"`
	ExitCode   *int    `json:"exit_code,omitempty"`
	Signal     *string `json:"signal,omitempty"`
}

// NewOutputData returns the data event for raw bytes read at offset.
func NewOutputData(offset int64, raw []byte) OutputEvent {
	if utf8.Valid(raw) {
		return OutputEvent{Offset: offset, Data: string(raw)}
	}
	return OutputEvent{Offset: offset, DataBase64: raw}
}

// PartialRune is how many bytes at the end of b begin a UTF-8 sequence
// that b does not finish (0 when b ends with a whole rune, or with bytes
// that are no UTF-8 at all). Whoever cuts text into pieces holds those
// bytes back for the next piece, so that the pieces join into the text.
func PartialRune(b []byte) int {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}

// Bytes returns the raw output bytes of a data event.
func (e OutputEvent) Bytes() []byte {
	if e.DataBase64 != nil {
		return e.DataBase64
	}
	return []byte(e.Data)
}

// End is the offset just past this event's bytes: where to resume.
func (e OutputEvent) End() int64 {
	if e.DataBase64 != nil {
		return e.Offset + int64(len(e.DataBase64))
	}
	return e.Offset + int64(len(e.Data))
}

// TarResult is the body of a 200 answer to POST /v1/files/tar.
type TarResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Init script states.
const (
	InitPending   = "pending"
	InitRunning   = "running"
	InitSucceeded = "succeeded"
	InitFailed    = "failed"
)

// InitStatus is the body of GET /v1/init and of POST /v1/init/rerun.
type InitStatus struct {
	State      string     `json:"state"`
	ExitCode   *int       `json:"exit_code"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Runs       int        `json:"runs"`
}

// Init log pages. The log is on the workspace's volume, where its user can
// make it any size (a sparse file of terabytes costs nothing), so it is
// only ever read a bounded page at a time.
const (
	// MaxInitLogPage is the most one GET /v1/init/log answers, and its
	// default limit.
	MaxInitLogPage = 1 << 20
	// MaxInitLogTailLines bounds tail_lines.
	MaxInitLogTailLines = 10_000
	// MaxInitLogCount is the largest log whose lines the agent counts
	// (X-Log-Lines); counting costs a read of the whole log.
	MaxInitLogCount = 64 << 20
)

// Headers of an init log page.
const (
	HeaderLogSize       = "X-Log-Size"        // the whole log's size in bytes
	HeaderLogOffset     = "X-Log-Offset"      // where the page starts
	HeaderLogNextOffset = "X-Log-Next-Offset" // just past the page: where the next one starts
	HeaderLogLines      = "X-Log-Lines"       // the log's lines, when it is at most MaxInitLogCount
)

// InitLogQuery asks for one page of the init log: Limit bytes (0 means
// MaxInitLogPage) from Offset, or with TailLines the last TailLines lines
// within the last Limit bytes, trailing line breaks left out.
type InitLogQuery struct {
	Offset    int64
	Limit     int64
	TailLines int
}

// InitLog is one page of the init log: the bytes from Offset to Next, and
// the whole log's size. Lines counts the lines of the whole log (its
// trailing line breaks left out), -1 when the log is too large to count.
type InitLog struct {
	Offset int64
	Next   int64
	Data   []byte
	Size   int64
	Lines  int64
}

// Stats sources.
const (
	StatsSourceCgroupV1 = "cgroup-v1"
	StatsSourceCgroupV2 = "cgroup-v2"
	StatsSourceProc     = "proc"
)

// Stats is the body of GET /v1/stats.
type Stats struct {
	CPU    CPUStats    `json:"cpu"`
	Memory MemoryStats `json:"memory"`
	Disk   DiskStats   `json:"disk"`
	Source string      `json:"source"`
}

// CPUStats: UsageSeconds is cumulative CPU time; Cores is the CPU limit
// (quota/period), nil when unlimited.
type CPUStats struct {
	UsageSeconds float64  `json:"usage_seconds"`
	Cores        *float64 `json:"cores"`
}

// MemoryStats: LimitBytes is nil when unlimited.
type MemoryStats struct {
	UsedBytes  int64  `json:"used_bytes"`
	LimitBytes *int64 `json:"limit_bytes"`
}

// DiskStats describes the filesystem holding Path.
type DiskStats struct {
	Path       string `json:"path"`
	UsedBytes  int64  `json:"used_bytes"`
	TotalBytes int64  `json:"total_bytes"`
}
