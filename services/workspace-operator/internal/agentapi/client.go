package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Error is a non-2xx answer from the agent.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("workspace-agent: %d %s: %s", e.Status, e.Code, e.Message)
}

// ErrorCode returns the agent's error code carried by err, or "" when err is
// not an *Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Client calls one workspace-agent. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the agent at baseURL (e.g.
// "http://10.0.0.7:7070") authenticating with token. A nil hc means
// http.DefaultClient; deadlines come from the contexts passed to each call,
// because exec and output streams may legitimately run for many minutes.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: hc}
}

// Health calls GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/healthz", nil, nil, http.StatusOK, nil)
}

// Ready calls GET /readyz. A 503 is not an error: the Readiness says why the
// agent is not ready.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	resp, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, decodeError(resp)
	}
	var r Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode readiness: %w", err)
	}
	return &r, nil
}

// Exec runs a command synchronously (POST /v1/exec).
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	var res ExecResult
	if err := c.doJSON(ctx, http.MethodPost, "/v1/exec", nil, req, http.StatusOK, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// StartProcess starts a detached process (POST /v1/processes).
func (c *Client) StartProcess(ctx context.Context, req StartProcessRequest) (*Process, error) {
	var p Process
	if err := c.doJSON(ctx, http.MethodPost, "/v1/processes", nil, req, http.StatusCreated, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// GetProcess describes one detached process.
func (c *Client) GetProcess(ctx context.Context, id string) (*Process, error) {
	var p Process
	if err := c.doJSON(ctx, http.MethodGet, "/v1/processes/"+url.PathEscape(id), nil, nil, http.StatusOK, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListProcesses lists the detached processes, oldest first.
func (c *Client) ListProcesses(ctx context.Context) ([]Process, error) {
	var l ProcessList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/processes", nil, nil, http.StatusOK, &l); err != nil {
		return nil, err
	}
	return l.Processes, nil
}

// Signal sends a signal (TERM, KILL, INT, HUP, QUIT, USR1, USR2) to the
// process group of a detached process.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/processes/"+url.PathEscape(id)+"/signal", nil,
		SignalRequest{Signal: signal}, http.StatusNoContent, nil)
}

// DeleteProcess removes an exited process and its output.
func (c *Client) DeleteProcess(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/processes/"+url.PathEscape(id), nil, nil, http.StatusNoContent, nil)
}

// FollowOutput streams a detached process's output from offset. With follow
// it goes on until the process exits (the last event then has EOF set) or ctx
// ends; without, it ends with what exists now. Stopping the iteration closes
// the stream and does not affect the process; resume later at the End() of
// the last event received. An error ends the sequence.
func (c *Client) FollowOutput(ctx context.Context, id string, offset int64, follow bool) iter.Seq2[OutputEvent, error] {
	return func(yield func(OutputEvent, error) bool) {
		q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "follow": {strconv.FormatBool(follow)}}
		resp, err := c.do(ctx, http.MethodGet, "/v1/processes/"+url.PathEscape(id)+"/output", q, nil, "")
		if err != nil {
			yield(OutputEvent{}, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			yield(OutputEvent{}, decodeError(resp))
			return
		}
		sc := bufio.NewScanner(resp.Body)
		// A 64 KiB chunk can grow about 6x as escaped JSON (\u00XX).
		sc.Buffer(make([]byte, 0, 128<<10), 8*MaxOutputChunk)
		for sc.Scan() {
			var ev OutputEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				yield(OutputEvent{}, fmt.Errorf("decode output event: %w", err))
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(OutputEvent{}, fmt.Errorf("read output stream: %w", err))
		}
	}
}

// PutFile writes a file atomically, creating parent directories
// (PUT /v1/files). A zero mode means 0644.
func (c *Client) PutFile(ctx context.Context, path string, mode fs.FileMode, body io.Reader) error {
	if mode == 0 {
		mode = 0o644
	}
	q := url.Values{"path": {path}, "mode": {fmt.Sprintf("%04o", mode.Perm())}}
	resp, err := c.do(ctx, http.MethodPut, "/v1/files", q, body, "application/octet-stream")
	if err != nil {
		return err
	}
	return expect(resp, http.StatusNoContent, nil)
}

// GetFile returns a file's content; the caller closes it.
func (c *Client) GetFile(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/files", url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// DeleteFile removes a file, or a directory (recursively when asked).
func (c *Client) DeleteFile(ctx context.Context, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	return c.doJSON(ctx, http.MethodDelete, "/v1/files", q, nil, http.StatusNoContent, nil)
}

// UploadTar extracts a tar (plain or gzip) into dir. With replace, dir's old
// content is swapped for the archive's in one step.
func (c *Client) UploadTar(ctx context.Context, dir string, replace bool, archive io.Reader) (*TarResult, error) {
	q := url.Values{"dir": {dir}, "replace": {strconv.FormatBool(replace)}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/files/tar", q, archive, "application/x-tar")
	if err != nil {
		return nil, err
	}
	var res TarResult
	if err := expect(resp, http.StatusOK, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// InitStatus reports the init script's state.
func (c *Client) InitStatus(ctx context.Context) (*InitStatus, error) {
	var s InitStatus
	if err := c.doJSON(ctx, http.MethodGet, "/v1/init", nil, nil, http.StatusOK, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// InitLog returns the init log from byte offset on.
func (c *Client) InitLog(ctx context.Context, offset int64) (*InitLog, error) {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	resp, err := c.do(ctx, http.MethodGet, "/v1/init/log", q, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read init log: %w", err)
	}
	size, err := strconv.ParseInt(resp.Header.Get("X-Log-Size"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("parse X-Log-Size: %w", err)
	}
	return &InitLog{Offset: offset, Data: data, Size: size}, nil
}

// RerunInit starts the init script again. It fails with code "conflict"
// while the script is running.
func (c *Client) RerunInit(ctx context.Context) (*InitStatus, error) {
	var s InitStatus
	if err := c.doJSON(ctx, http.MethodPost, "/v1/init/rerun", nil, nil, http.StatusAccepted, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Stats reports the workspace container's resource usage.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var s Stats
	if err := c.doJSON(ctx, http.MethodGet, "/v1/stats", nil, nil, http.StatusOK, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// doJSON sends in (if not nil) as JSON and decodes a want-status answer into out (if not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in any, want int, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, q, body, ctype)
	if err != nil {
		return err
	}
	return expect(resp, want, out)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// expect closes resp, turning a status other than want into an *Error.
func expect(resp *http.Response, want int, out any) error {
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body ErrorBody
	if json.Unmarshal(b, &body) == nil && body.Code != "" {
		e.Code, e.Message = body.Code, body.Error
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b))
	}
	return e
}
