package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxExecSkip is the most of stdout past the operator's cap that is read
// (and dropped) to reach stderr: an agent whose cap is larger than the
// operator's has sent that much at most.
const maxExecSkip = 64 << 20

// ExecOutput is the answer to an exec, read as it arrives: Head first,
// then Stdout, then Stderr, each at most the cap given to ExecStream (the
// rest is dropped, the stream marked truncated and TruncationMarker
// added). Read Stdout before Stderr; Stderr skips what is left of it.
type ExecOutput struct {
	Head   ExecHead
	body   io.ReadCloser
	stdout io.Reader
	stderr io.Reader
	// skip is what the client drops of the body between the two streams.
	skip int64
}

// Stdout returns the command's stdout.
func (o *ExecOutput) Stdout() io.Reader { return o.stdout }

// Stderr returns the command's stderr; what was not read of stdout is
// skipped first.
func (o *ExecOutput) Stderr() io.Reader {
	if _, err := io.Copy(io.Discard, o.stdout); err != nil {
		return errReader{err}
	}
	if o.skip > maxExecSkip {
		// Only an agent that ignores its own cap gets here; reading a
		// GiB it claims to have would cost time for nothing.
		return errReader{fmt.Errorf("%w: %d bytes of stdout past the cap to skip", ErrTooLarge, o.skip)}
	}
	if o.skip > 0 {
		n, err := io.CopyN(io.Discard, o.body, o.skip)
		o.skip -= n
		if err != nil {
			return errReader{unexpected(err)}
		}
	}
	return o.stderr
}

// Close closes the answer.
func (o *ExecOutput) Close() error { return o.body.Close() }

// ExecStream runs a command synchronously (POST /v1/exec) and returns its
// answer unread, so that output of any size can be passed on a buffer at a
// time. Each stream is capped at maxOutput bytes here too, whatever the
// agent sends. An agent that answers in JSON (one older than the streamed
// answer) is read whole, up to MaxExecJSON.
func (c *Client) ExecStream(ctx context.Context, req ExecRequest, maxOutput int64) (*ExecOutput, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/exec", nil, bytes.NewReader(b), "application/json", ExecStreamType)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/json" {
		defer resp.Body.Close()
		var res ExecResult
		if err := decodeLimited(resp.Body, &res, MaxExecJSON); err != nil {
			return nil, fmt.Errorf("decode response: %w", err)
		}
		return execOutputOf(res, maxOutput), nil
	}
	if mt != ExecStreamType {
		resp.Body.Close()
		return nil, fmt.Errorf("the agent answered exec with %q", SafeText(mt, 64))
	}
	o, err := ReadExecStream(resp.Body, maxOutput)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return o, nil
}

// ReadExecStream reads the head of a streamed exec answer from body and
// returns the answer with its streams unread.
func ReadExecStream(body io.ReadCloser, maxOutput int64) (*ExecOutput, error) {
	br := bufio.NewReaderSize(body, MaxExecHead)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: an exec head longer than %d bytes", ErrTooLarge, MaxExecHead)
		}
		return nil, fmt.Errorf("read exec head: %w", unexpected(err))
	}
	var h ExecHead
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("decode exec head: %w", err)
	}
	if h.StdoutBytes < 0 || h.StderrBytes < 0 {
		return nil, fmt.Errorf("bad exec head: %d and %d bytes of output", h.StdoutBytes, h.StderrBytes)
	}
	h.Signal = SafeText(h.Signal, 16)
	o := &ExecOutput{body: readCloser{br, body}}
	var outMark, errMark string
	keepOut, keepErr := min(h.StdoutBytes, maxOutput), min(h.StderrBytes, maxOutput)
	if keepOut < h.StdoutBytes {
		h.StdoutTruncated, outMark = true, TruncationMarker(maxOutput)
	}
	if keepErr < h.StderrBytes {
		h.StderrTruncated, errMark = true, TruncationMarker(maxOutput)
	}
	o.skip = h.StdoutBytes - keepOut
	o.stdout = marked(&exactReader{r: io.LimitReader(o.body, keepOut), left: keepOut}, outMark)
	o.stderr = marked(&exactReader{r: io.LimitReader(o.body, keepErr), left: keepErr}, errMark)
	h.StdoutBytes, h.StderrBytes = keepOut+int64(len(outMark)), keepErr+int64(len(errMark))
	o.Head = h
	return o, nil
}

// execOutputOf serves an answer read whole with the streamed answer's API.
func execOutputOf(res ExecResult, maxOutput int64) *ExecOutput {
	h := ExecHead{ExitCode: res.ExitCode, Signal: SafeText(res.Signal, 16), TimedOut: res.TimedOut,
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated, DurationMS: res.DurationMS}
	clip := func(s string, truncated *bool) string {
		if int64(len(s)) <= maxOutput {
			return s
		}
		*truncated = true
		return s[:maxOutput] + TruncationMarker(maxOutput)
	}
	out, errs := clip(res.Stdout, &h.StdoutTruncated), clip(res.Stderr, &h.StderrTruncated)
	h.StdoutBytes, h.StderrBytes = int64(len(out)), int64(len(errs))
	return &ExecOutput{Head: h, body: io.NopCloser(strings.NewReader("")),
		stdout: strings.NewReader(out), stderr: strings.NewReader(errs)}
}

func marked(r io.Reader, mark string) io.Reader {
	if mark == "" {
		return r
	}
	return io.MultiReader(r, strings.NewReader(mark))
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
