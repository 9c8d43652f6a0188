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
	"unicode"
	"unicode/utf8"
)

// Caps on what the client reads from an agent, per kind of answer. The
// agent runs inside a workspace whose user may have replaced or subverted
// it, so its answers are read as untrusted input: never more than these.
const (
	// MaxSmallAnswer bounds the fixed-size answers: health, readiness, init
	// status, stats, tar results.
	MaxSmallAnswer = 64 << 10
	// MaxProcessAnswer bounds one process: its command and argv come from
	// a request body of at most 1 MiB, up to six times larger escaped, and
	// a command is in argv too.
	MaxProcessAnswer = 16 << 20
	// MaxProcessList bounds the list of processes (agent CLIs get their
	// prompts on stdin, which a process's description leaves out, so an
	// entry is small).
	MaxProcessList = 16 << 20
	// maxErrorBody is what is read of an error answer.
	maxErrorBody = 4 << 10
	// maxMessage bounds the agent's error message kept in an Error.
	maxMessage = 256
	// maxDetail bounds the raw error body kept for the log.
	maxDetail = 1 << 10
)

// ErrTooLarge is returned when an answer is larger than its cap.
var ErrTooLarge = errors.New("the workspace agent's answer is too large")

// CodeRedirect is the Code of an Error for a 3xx answer: the client never
// follows one, since a workload that could answer in the agent's place
// would use it to aim the operator's requests elsewhere.
const CodeRedirect = "redirect"

// Error is a non-2xx answer from the agent. Message is the agent's own
// message, bounded and stripped of control characters, and only when the
// answer was the agent's JSON error shape; Detail is the start of the raw
// body, for logs only.
type Error struct {
	Status  int
	Code    string
	Message string
	Detail  string
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
// "http://10.0.0.7:7070") authenticating with token. A nil hc means one
// shared NewHTTPClient, so every caller gets its bounded headers and
// pooled connections; deadlines come from the contexts passed to each
// call, because exec and output streams may legitimately run for many
// minutes. Whatever hc says, redirects are never followed: a 3xx is
// answered as an Error with CodeRedirect.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = defaultHTTP
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &c}
}

// defaultHTTP is the client NewClient uses when given none: one transport
// for the process, so its idle connections are reused.
var defaultHTTP = NewHTTPClient()

// NewHTTPClient is an HTTP client for agents with a transport of its own
// whose response headers are bounded (net/http allows 10 MiB by default).
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxResponseHeaderBytes = 64 << 10
	t.ResponseHeaderTimeout = 0 // an exec answers when its command ends
	return &http.Client{Transport: t}
}

// Health calls GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/healthz", nil, nil, http.StatusOK, nil, MaxSmallAnswer)
}

// Ready calls GET /readyz. A 503 is not an error: the Readiness says why the
// agent is not ready.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	resp, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, "", "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, decodeError(resp)
	}
	var r Readiness
	if err := decodeLimited(resp.Body, &r, MaxSmallAnswer); err != nil {
		return nil, fmt.Errorf("decode readiness: %w", err)
	}
	return &r, nil
}

// MaxExecJSON bounds an exec answer read whole as JSON: two streams at the
// agent's default cap of 10 MiB each, as text.
const MaxExecJSON = 24 << 20

// Exec runs a command synchronously (POST /v1/exec) and holds its whole
// output; it is for commands of little output. ExecStream reads the output
// a buffer at a time.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	var res ExecResult
	if err := c.doJSON(ctx, http.MethodPost, "/v1/exec", nil, req, http.StatusOK, &res, MaxExecJSON); err != nil {
		return nil, err
	}
	return &res, nil
}

// StartProcess starts a detached process (POST /v1/processes).
func (c *Client) StartProcess(ctx context.Context, req StartProcessRequest) (*Process, error) {
	var p Process
	if err := c.doJSON(ctx, http.MethodPost, "/v1/processes", nil, req, http.StatusCreated, &p, MaxProcessAnswer); err != nil {
		return nil, err
	}
	return &p, nil
}

// GetProcess describes one detached process.
func (c *Client) GetProcess(ctx context.Context, id string) (*Process, error) {
	var p Process
	if err := c.doJSON(ctx, http.MethodGet, "/v1/processes/"+url.PathEscape(id), nil, nil, http.StatusOK, &p, MaxProcessAnswer); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListProcesses lists the detached processes, oldest first.
func (c *Client) ListProcesses(ctx context.Context) ([]Process, error) {
	var l ProcessList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/processes", nil, nil, http.StatusOK, &l, MaxProcessList); err != nil {
		return nil, err
	}
	return l.Processes, nil
}

// Signal sends a signal (TERM, KILL, INT, HUP, QUIT, USR1, USR2) to the
// process group of a detached process.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/processes/"+url.PathEscape(id)+"/signal", nil,
		SignalRequest{Signal: signal}, http.StatusNoContent, nil, MaxSmallAnswer)
}

// DeleteProcess removes an exited process and its output.
func (c *Client) DeleteProcess(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/processes/"+url.PathEscape(id), nil, nil, http.StatusNoContent, nil, MaxSmallAnswer)
}

// OutputQuery says which output of a detached process to stream.
type OutputQuery struct {
	// Offset is the byte offset to start at.
	Offset int64
	// Follow goes on until the process exits; without it the stream ends
	// with the output that exists now.
	Follow bool
	// Limit, when positive, ends the stream after that many bytes of output.
	Limit int64
}

// FollowOutput streams a detached process's output as q says. With Follow
// it goes on until the process exits (the last event then has EOF set) or
// ctx ends. Stopping the iteration closes the stream and does not affect
// the process; resume later at the End() of the last event received. An
// error ends the sequence. Each event is checked: at most MaxOutputChunk
// bytes, never before where the previous one ended, and no more than
// Limit in all.
func (c *Client) FollowOutput(ctx context.Context, id string, q OutputQuery) iter.Seq2[OutputEvent, error] {
	return func(yield func(OutputEvent, error) bool) {
		v := url.Values{"offset": {strconv.FormatInt(q.Offset, 10)}, "follow": {strconv.FormatBool(q.Follow)}}
		if q.Limit > 0 {
			v.Set("limit", strconv.FormatInt(q.Limit, 10))
		}
		resp, err := c.do(ctx, http.MethodGet, "/v1/processes/"+url.PathEscape(id)+"/output", v, nil, "", "")
		if err != nil {
			yield(OutputEvent{}, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			yield(OutputEvent{}, decodeError(resp))
			return
		}
		ReadOutputEvents(resp.Body, q)(yield)
	}
}

// ReadOutputEvents reads the NDJSON output stream of a read asked for with
// q from r, checking every event.
func ReadOutputEvents(r io.Reader, q OutputQuery) iter.Seq2[OutputEvent, error] {
	return func(yield func(OutputEvent, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), MaxOutputEventLine)
		check := outputChecker{next: q.Offset, limit: q.Limit}
		for sc.Scan() {
			var ev OutputEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				yield(OutputEvent{}, fmt.Errorf("decode output event: %w", err))
				return
			}
			if err := check.event(ev); err != nil {
				yield(OutputEvent{}, err)
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("%w: an output event longer than %d bytes", ErrTooLarge, MaxOutputEventLine)
			}
			yield(OutputEvent{}, fmt.Errorf("read output stream: %w", err))
		}
	}
}

// outputChecker holds an output stream to what the agent promises.
type outputChecker struct {
	next, limit, sent int64
	ended             bool
}

func (c *outputChecker) event(ev OutputEvent) error {
	n := int64(len(ev.Data) + len(ev.DataBase64))
	switch {
	case c.ended:
		return errors.New("bad output event: an event after the end")
	case ev.Data != "" && ev.DataBase64 != nil:
		return errors.New("bad output event: both data and data_b64")
	case n > MaxOutputChunk:
		return fmt.Errorf("bad output event: %d bytes, more than %d", n, MaxOutputChunk)
	case ev.Offset < c.next:
		return fmt.Errorf("bad output event: offset %d before %d, where the output had got to", ev.Offset, c.next)
	case c.limit > 0 && c.sent+n > c.limit:
		return fmt.Errorf("bad output event: more than the %d bytes asked for", c.limit)
	case ev.EOF && n > 0:
		return errors.New("bad output event: data in the end event")
	}
	c.next, c.sent, c.ended = ev.Offset+n, c.sent+n, ev.EOF
	return nil
}

// PutFile writes a file atomically, creating parent directories
// (PUT /v1/files). A zero mode means 0644.
func (c *Client) PutFile(ctx context.Context, path string, mode fs.FileMode, body io.Reader) error {
	if mode == 0 {
		mode = 0o644
	}
	q := url.Values{"path": {path}, "mode": {fmt.Sprintf("%04o", mode.Perm())}}
	resp, err := c.do(ctx, http.MethodPut, "/v1/files", q, body, "application/octet-stream", "")
	if err != nil {
		return err
	}
	return expect(resp, http.StatusNoContent, nil, MaxSmallAnswer)
}

// GetFile returns a file's content, at most max bytes of it (a longer
// file ends in ErrTooLarge); the caller closes it.
func (c *Client) GetFile(ctx context.Context, path string, max int64) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/files", url.Values{"path": {path}}, nil, "", "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return readCloser{&limitedReader{r: resp.Body, n: max}, resp.Body}, nil
}

// DeleteFile removes a file, or a directory (recursively when asked).
func (c *Client) DeleteFile(ctx context.Context, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	return c.doJSON(ctx, http.MethodDelete, "/v1/files", q, nil, http.StatusNoContent, nil, MaxSmallAnswer)
}

// UploadTar extracts a tar (plain or gzip) into dir. With replace, dir's old
// content is swapped for the archive's in one step.
func (c *Client) UploadTar(ctx context.Context, dir string, replace bool, archive io.Reader) (*TarResult, error) {
	q := url.Values{"dir": {dir}, "replace": {strconv.FormatBool(replace)}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/files/tar", q, archive, "application/x-tar", "")
	if err != nil {
		return nil, err
	}
	var res TarResult
	if err := expect(resp, http.StatusOK, &res, MaxSmallAnswer); err != nil {
		return nil, err
	}
	return &res, nil
}

// InitStatus reports the init script's state.
func (c *Client) InitStatus(ctx context.Context) (*InitStatus, error) {
	var s InitStatus
	if err := c.doJSON(ctx, http.MethodGet, "/v1/init", nil, nil, http.StatusOK, &s, MaxSmallAnswer); err != nil {
		return nil, err
	}
	return &s, nil
}

// InitLog returns one page of the init log from byte offset on (at most
// MaxInitLogPage bytes; continue at Next).
func (c *Client) InitLog(ctx context.Context, offset int64) (*InitLog, error) {
	l, body, err := c.InitLogPage(ctx, InitLogQuery{Offset: offset})
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if l.Data, err = io.ReadAll(body); err != nil {
		return nil, fmt.Errorf("read init log: %w", err)
	}
	return l, nil
}

// InitLogPage asks for one page of the init log and returns what its
// headers say (Data is nil) and its body, which yields exactly Next-Offset
// bytes (ErrTooLarge past them, io.ErrUnexpectedEOF before); the caller
// closes it.
func (c *Client) InitLogPage(ctx context.Context, q InitLogQuery) (*InitLog, io.ReadCloser, error) {
	v := url.Values{}
	if q.TailLines > 0 {
		v.Set("tail_lines", strconv.Itoa(q.TailLines))
	} else {
		v.Set("offset", strconv.FormatInt(q.Offset, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.FormatInt(q.Limit, 10))
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/init/log", v, nil, "", "")
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, nil, decodeError(resp)
	}
	l, err := ParseInitLogHeaders(resp.Header, q)
	if err != nil {
		resp.Body.Close()
		return nil, nil, err
	}
	n := l.Next - l.Offset
	return l, readCloser{&exactReader{r: &limitedReader{r: resp.Body, n: n}, left: n}, resp.Body}, nil
}

// ParseInitLogHeaders reads the X-Log-* headers of a page asked for with
// q, refusing any that do not add up: a page outside the log, larger than
// asked for or than MaxInitLogPage, or not where it was asked for.
func ParseInitLogHeaders(h http.Header, q InitLogQuery) (*InitLog, error) {
	num := func(key string) (int64, error) {
		n, err := strconv.ParseInt(h.Get(key), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad init log page: %s %q", key, h.Get(key))
		}
		return n, nil
	}
	l := &InitLog{Lines: -1}
	var err error
	if l.Size, err = num(HeaderLogSize); err != nil {
		return nil, err
	}
	if l.Offset, err = num(HeaderLogOffset); err != nil {
		return nil, err
	}
	if l.Next, err = num(HeaderLogNextOffset); err != nil {
		return nil, err
	}
	if h.Get(HeaderLogLines) != "" {
		if l.Lines, err = num(HeaderLogLines); err != nil {
			return nil, err
		}
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxInitLogPage {
		limit = MaxInitLogPage
	}
	switch {
	case l.Offset > l.Next || l.Next > l.Size:
		return nil, fmt.Errorf("bad init log page: bytes %d to %d of %d", l.Offset, l.Next, l.Size)
	case l.Next-l.Offset > limit:
		return nil, fmt.Errorf("bad init log page: %d bytes, more than the %d asked for", l.Next-l.Offset, limit)
	case q.TailLines <= 0 && l.Offset != q.Offset:
		return nil, fmt.Errorf("bad init log page: it starts at %d, not at %d", l.Offset, q.Offset)
	case l.Lines > l.Size:
		return nil, fmt.Errorf("bad init log page: %d lines in %d bytes", l.Lines, l.Size)
	}
	return l, nil
}

// RerunInit starts the init script again. It fails with code "conflict"
// while the script is running.
func (c *Client) RerunInit(ctx context.Context) (*InitStatus, error) {
	var s InitStatus
	if err := c.doJSON(ctx, http.MethodPost, "/v1/init/rerun", nil, nil, http.StatusAccepted, &s, MaxSmallAnswer); err != nil {
		return nil, err
	}
	return &s, nil
}

// Stats reports the workspace container's resource usage.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var s Stats
	if err := c.doJSON(ctx, http.MethodGet, "/v1/stats", nil, nil, http.StatusOK, &s, MaxSmallAnswer); err != nil {
		return nil, err
	}
	return &s, nil
}

// doJSON sends in (if not nil) as JSON and decodes a want-status answer of
// at most max bytes into out (if not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in any, want int, out any, max int64) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, q, body, ctype, "")
	if err != nil {
		return err
	}
	return expect(resp, want, out, max)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype, accept string) (*http.Response, error) {
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
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// expect closes resp, turning a status other than want into an *Error and
// decoding at most max bytes of a want answer into out.
func expect(resp *http.Response, want int, out any, max int64) error {
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return decodeError(resp)
	}
	if out == nil {
		// Drained (boundedly) so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, max))
		return nil
	}
	if err := decodeLimited(resp.Body, out, max); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// decodeLimited decodes one JSON value of at most max bytes from r.
func decodeLimited(r io.Reader, out any, max int64) error {
	lr := &limitedReader{r: r, n: max}
	err := json.NewDecoder(lr).Decode(out)
	if lr.over {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return err
}

// decodeError reads a bounded part of an error answer. Only the agent's
// JSON error shape gives a Code and a Message, and the Message is cleaned
// (SafeText): a raw body is never a message, only a Detail for the log.
func decodeError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e.Detail = string(b[:min(len(b), maxDetail)])
	var body ErrorBody
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		e.Code, e.Message = CodeRedirect, "the agent answered with a redirect, which is not followed"
	case json.Unmarshal(b, &body) == nil && body.Code != "":
		e.Code, e.Message = SafeText(body.Code, 64), SafeText(body.Error, maxMessage)
	default:
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	return e
}

// SafeText is s fit to show: valid UTF-8, control and format characters
// (line breaks, escapes, bidi overrides) turned into spaces, and at most
// max bytes, cut at a rune with "…" when longer.
func SafeText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			out := b.String()
			for len(out)+len("…") > max && len(out) > 0 {
				_, n := utf8.DecodeLastRuneInString(out)
				out = out[:len(out)-n]
			}
			return out + "…"
		}
		b.WriteRune(r)
	}
	return b.String()
}

// limitedReader reads at most n bytes and then fails with ErrTooLarge if
// there is more, so a too-large answer is an error and not a silent cut.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.over {
		return 0, ErrTooLarge
	}
	if l.n <= 0 {
		// One byte more tells a body that ends here from one that goes on.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// exactReader fails with io.ErrUnexpectedEOF when its source ends before
// left bytes.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}
