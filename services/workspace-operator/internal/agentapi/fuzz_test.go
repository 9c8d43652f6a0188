package agentapi

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzReadExecStream: whatever an agent sends as a streamed exec answer,
// reading it never panics, never yields more than the cap (plus the
// marker) per stream, and yields exactly what the head promised or fails.
func FuzzReadExecStream(f *testing.F) {
	f.Add([]byte(`{"exit_code":0,"stdout_bytes":3,"stderr_bytes":2}`+"\nouter"), int64(10))
	f.Add([]byte(`{"stdout_bytes":10,"stderr_bytes":4,"stdout_truncated":true}`+"\n0123456789abcd"), int64(4))
	f.Add([]byte(`{"stdout_bytes":99999999999,"stderr_bytes":1}`+"\nx"), int64(1<<20))
	f.Add([]byte(`{"exit_code":-1,"signal":"KILL\u001b","timed_out":true}`+"\n"), int64(1))
	f.Add([]byte("no newline at all"), int64(5))
	f.Add([]byte(`{"stdout_bytes":-5}`+"\n"), int64(5))
	f.Fuzz(func(t *testing.T, data []byte, max int64) {
		if max < 0 || max > 1<<20 {
			max %= 1 << 20
			if max < 0 {
				max = -max
			}
		}
		o, err := ReadExecStream(io.NopCloser(bytes.NewReader(data)), max)
		if err != nil {
			return
		}
		mark := int64(len(TruncationMarker(max)))
		out, outErr := io.ReadAll(o.Stdout())
		errs, errErr := io.ReadAll(o.Stderr())
		if int64(len(out)) > max+mark || int64(len(errs)) > max+mark {
			t.Fatalf("%d and %d bytes read with a cap of %d", len(out), len(errs), max)
		}
		if outErr == nil && int64(len(out)) != o.Head.StdoutBytes {
			t.Fatalf("stdout: %d bytes read, head says %d", len(out), o.Head.StdoutBytes)
		}
		if outErr == nil && errErr == nil && int64(len(errs)) != o.Head.StderrBytes {
			t.Fatalf("stderr: %d bytes read, head says %d", len(errs), o.Head.StderrBytes)
		}
		if !safe(o.Head.Signal, 16) {
			t.Fatalf("signal %q is not clean", o.Head.Signal)
		}
	})
}

// FuzzParseInitLogHeaders: an accepted page always lies inside the log
// and is no larger than asked for.
func FuzzParseInitLogHeaders(f *testing.F) {
	f.Add("100", "0", "50", "3", int64(0), int64(0), 0)
	f.Add("100", "90", "100", "", int64(0), int64(1024), 500)
	f.Add("5", "6", "4", "-1", int64(6), int64(0), 0)
	f.Add("99999999999999999999", "0", "1", "x", int64(0), int64(1), 0)
	f.Fuzz(func(t *testing.T, size, off, next, lines string, qOff, qLimit int64, tail int) {
		h := http.Header{}
		h.Set(HeaderLogSize, size)
		h.Set(HeaderLogOffset, off)
		h.Set(HeaderLogNextOffset, next)
		h.Set(HeaderLogLines, lines)
		q := InitLogQuery{Offset: qOff, Limit: qLimit, TailLines: tail}
		l, err := ParseInitLogHeaders(h, q)
		if err != nil {
			return
		}
		limit := qLimit
		if limit <= 0 || limit > MaxInitLogPage {
			limit = MaxInitLogPage
		}
		if l.Offset < 0 || l.Offset > l.Next || l.Next > l.Size || l.Next-l.Offset > limit || l.Lines < -1 {
			t.Fatalf("accepted %+v for %+v", l, q)
		}
		if tail <= 0 && l.Offset != qOff {
			t.Fatalf("a page at %d for a query at %d", l.Offset, qOff)
		}
	})
}

// FuzzReadOutputEvents: whatever an agent streams, every event passed on
// is at most MaxOutputChunk, none starts before the previous one ended,
// and no more than the limit is passed on in all.
func FuzzReadOutputEvents(f *testing.F) {
	f.Add([]byte(`{"offset":0,"data":"hi\n"}`+"\n"+`{"offset":3,"eof":true,"exit_code":0}`+"\n"), int64(0), int64(0))
	f.Add([]byte(`{"offset":5,"data_b64":"/w=="}`+"\n"+`{"offset":2,"data":"back"}`+"\n"), int64(0), int64(0))
	f.Add([]byte(`{"offset":0,"data":"abcdef"}`+"\n"), int64(0), int64(3))
	f.Add([]byte(`{"offset":0,"data":"a","data_b64":"YQ=="}`+"\n"), int64(0), int64(0))
	f.Add([]byte(`{"offset":0,"eof":true}`+"\n"+`{"offset":0,"data":"after"}`+"\n"), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, offset, limit int64) {
		next, sent := offset, int64(0)
		for ev, err := range ReadOutputEvents(bytes.NewReader(data), OutputQuery{Offset: offset, Limit: limit}) {
			if err != nil {
				return
			}
			n := int64(len(ev.Bytes()))
			if n > MaxOutputChunk || ev.Offset < next || (limit > 0 && sent+n > limit) {
				t.Fatalf("passed on %d bytes at %d (next %d, %d sent, limit %d)", n, ev.Offset, next, sent, limit)
			}
			next, sent = ev.End(), sent+n
		}
	})
}

// FuzzDecodeError: an error answer's message is always clean and short,
// whatever the body.
func FuzzDecodeError(f *testing.F) {
	f.Add(404, []byte(`{"error":"process not found","code":"not_found"}`))
	f.Add(409, []byte(`{"error":"busy\u001b[2J\r\n\u202eevil","code":"conflict\n"}`))
	f.Add(500, []byte("<html>oops</html>"))
	f.Add(302, []byte(""))
	f.Add(400, []byte(`{"error":"`+strings.Repeat("\xff", 300)+`","code":"bad_request"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := decodeError(&http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}).(*Error)
		if !safe(e.Message, maxMessage) || !safe(e.Code, 64) || len(e.Detail) > maxDetail {
			t.Fatalf("code %q message %q detail %d bytes", e.Code, e.Message, len(e.Detail))
		}
		if e.Code == "" {
			t.Fatal("no code")
		}
		if status >= 300 && status < 400 && e.Code != CodeRedirect {
			t.Fatalf("a %d is code %q", status, e.Code)
		}
	})
}

// safe says s is what SafeText promises: valid UTF-8 without control or
// format characters, at most max bytes.
func safe(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}
