package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// raw calls the API without the spec-validating client: for answers read
// as a stream, and for statuses the spec does not list yet.
func (e *restEnv) raw(method, path string, body any) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	res, err := (&http.Client{Timeout: testwait.Scaled(2 * time.Minute)}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

// rawJSON is raw, decoded.
func (e *restEnv) rawJSON(method, path string, body, out any) int {
	e.t.Helper()
	res := e.raw(method, path, body)
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		e.t.Fatalf("%s %s: %d, decode: %v", method, path, res.StatusCode, err)
	}
	return res.StatusCode
}

// allocated is how many bytes this process allocated while f ran (the
// REST server, its cache and the test's client; the agent is another
// process).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// discard reads a whole answer without holding it and says whether it
// was a 200 that is one JSON value.
func discard(t testing.TB, res *http.Response) int64 {
	t.Helper()
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The operator passes exec output on as it reads it: what the caller gets
// is what the command wrote (as JSON makes it), up to the caps.
func TestExecOutputThroughTheOperator(t *testing.T) {
	e, port := startAgentREST(t, func(h *Handler) { h.ExecMaxOutput = 4 << 20 })
	ws := readyAgentWorkspace(t, e, port, "exec-output", map[string]string{"SORTIE_AGENT_EXEC_MAX_OUTPUT": "8Mi"})
	tests := map[string]struct {
		command       string
		stdout        string // exactly, when wantLen is 0
		stderr        string
		wantLen       int
		wantTruncated bool
		marker        int64
	}{
		"small":                {command: "printf 'out\\n'; printf 'err' >&2; exit 3", stdout: "out\n", stderr: "err"},
		"escapes and html":     {command: `printf '<a href="x">&\t\001\033[1m\\</a>'`, stdout: "<a href=\"x\">&\t\x01\x1b[1m\\</a>"},
		"not utf-8":            {command: `printf 'a\377b\342\202'`, stdout: "a\ufffdb\ufffd\ufffd"},
		"multibyte":            {command: `printf 'h\303\251 \342\202\254 \360\237\230\200'`, stdout: "hé € 😀"},
		"empty":                {command: "true"},
		"3 MiB, under the cap": {command: "head -c 3145728 /dev/zero | tr '\\0' y", wantLen: 3 << 20},
		"over the operator's cap, under the agent's": {command: "head -c 6291456 /dev/zero | tr '\\0' y",
			wantLen: 4<<20 + len(agentapi.TruncationMarker(4<<20)), wantTruncated: true, marker: 4 << 20},
		"over both caps": {command: "head -c 10485760 /dev/zero | tr '\\0' y",
			wantLen: 4<<20 + len(agentapi.TruncationMarker(4<<20)), wantTruncated: true, marker: 4 << 20},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got ExecResponse
			if st := e.rawJSON("POST", "/api/workspaces/"+ws.id+"/exec", map[string]any{"command": tc.command}, &got); st != 200 {
				t.Fatalf("status %d: %+v", st, got)
			}
			switch {
			case tc.wantLen > 0:
				if len(got.Stdout) != tc.wantLen || got.StdoutTruncated != tc.wantTruncated {
					t.Errorf("stdout: %d bytes, truncated %v; want %d, %v", len(got.Stdout), got.StdoutTruncated, tc.wantLen, tc.wantTruncated)
				}
				if tc.marker > 0 && !strings.HasSuffix(got.Stdout, agentapi.TruncationMarker(tc.marker)) {
					t.Errorf("cut stdout ends %q, want the marker", got.Stdout[len(got.Stdout)-60:])
				}
			case got.Stdout != tc.stdout || got.Stderr != tc.stderr || got.StdoutTruncated || got.StderrTruncated:
				t.Errorf("got %+v, want stdout %q stderr %q", got, tc.stdout, tc.stderr)
			}
		})
	}
	// The answer is what encoding/json makes of the same output.
	res, err := ws.agent.Exec(context.Background(), agentapi.ExecRequest{Command: `printf 'x\000y\342\200\250z<>&'`})
	if err != nil {
		t.Fatal(err)
	}
	r := e.raw("POST", "/api/workspaces/"+ws.id+"/exec", map[string]any{"command": `printf 'x\000y\342\200\250z<>&'`})
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	want, _ := json.Marshal(ExecResponse{Stdout: res.Stdout})
	if !bytes.Contains(body, want[bytes.Index(want, []byte(`"stdout"`)):bytes.Index(want, []byte(`,"stderr"`))]) {
		t.Errorf("answer %s, want the stdout encoding/json makes, %s", body, want)
	}
}

// The memory bound: an exec of 10 MiB of output costs the operator a
// small, fixed amount, not a multiple of the output.
func TestExecOutputMemoryBound(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "exec-memory", nil)
	const limit = 2 << 20
	for name, cmd := range map[string]string{
		"text":          "head -c 10485760 /dev/zero | tr '\\0' y",
		"control bytes": "head -c 10485760 /dev/zero", // \u0000 each: six times larger as JSON
	} {
		t.Run(name, func(t *testing.T) {
			var n int64
			alloc := allocated(func() {
				n = discard(t, e.raw("POST", "/api/workspaces/"+ws.id+"/exec", map[string]any{"command": cmd}))
			})
			t.Logf("%d bytes answered, %d allocated", n, alloc)
			if n < 10<<20 {
				t.Errorf("only %d bytes answered", n)
			}
			if alloc > limit {
				t.Errorf("the operator allocated %d bytes for one exec of 10 MiB of output, want at most %d", alloc, limit)
			}
		})
	}
}

// writeInitLog puts content in place of the workspace's init log, as the
// workload can.
func writeInitLog(t testing.TB, ws *agentWorkspace, content []byte, sparse int64) {
	t.Helper()
	p := filepath.Join(ws.stateDir, "init.log")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if sparse > 0 {
		if err := os.Truncate(p, sparse); err != nil {
			t.Fatal(err)
		}
	}
}

// initLogAnswer is GET /init-log.
type initLogAnswer struct {
	Exists     bool   `json:"exists"`
	Content    string `json:"content"`
	TotalLines int    `json:"total_lines"`
	LogPath    string `json:"log_path"`
	Size       int64  `json:"size"`
	Offset     int64  `json:"offset"`
	NextOffset int64  `json:"next_offset"`
	Truncated  bool   `json:"truncated"`
}

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	return b.String()
}

// The init log is read a page at a time whatever its size: the last 500
// lines within its last MiB by default, or the page asked for.
func TestInitLogPaged(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "init-log", nil)
	big := bytes.Repeat([]byte("x"), 50<<20)
	tests := map[string]struct {
		log    []byte
		sparse int64
		query  string
		want   initLogAnswer
		// wantLen checks only the content's length (and that it is a tail
		// of the log).
		wantLen int
	}{
		"no log yet": {want: initLogAnswer{}},
		"short": {log: []byte("one\ntwo\n\n\n"),
			want: initLogAnswer{Exists: true, Content: "one\ntwo", TotalLines: 2, Size: 10, NextOffset: 7}},
		"the last 500 of 1200 lines": {log: []byte(numbered(1, 1200)),
			want: initLogAnswer{Exists: true, Content: strings.TrimSuffix(numbered(701, 1200), "\n"), TotalLines: 1200,
				Size: int64(len(numbered(1, 1200))), Offset: int64(len(numbered(1, 700))), NextOffset: int64(len(numbered(1, 1200)) - 1), Truncated: true}},
		"a page from an offset": {log: []byte(numbered(1, 20)), query: "?offset=7&limit=14",
			want: initLogAnswer{Exists: true, Content: "line 2\nline 3\n", TotalLines: 20, Size: int64(len(numbered(1, 20))),
				Offset: 7, NextOffset: 21, Truncated: true}},
		"a page never ends inside a rune": {log: []byte("ab\u20accd"), query: "?offset=0&limit=4",
			want: initLogAnswer{Exists: true, Content: "ab", TotalLines: 1, Size: 7, NextOffset: 2, Truncated: true}},
		"the page at the end": {log: []byte("abc\n"), query: "?offset=4",
			want: initLogAnswer{Exists: true, TotalLines: 1, Size: 4, Offset: 4, NextOffset: 4, Truncated: true}},
		"50 MiB on one line": {log: big, wantLen: agentapi.MaxInitLogPage,
			want: initLogAnswer{Exists: true, TotalLines: 1, Size: 50 << 20, Offset: 50<<20 - agentapi.MaxInitLogPage, NextOffset: 50 << 20, Truncated: true}},
		"a sparse terabyte": {log: []byte("start\n"), sparse: 1 << 40, wantLen: agentapi.MaxInitLogPage,
			want: initLogAnswer{Exists: true, TotalLines: 1, Size: 1 << 40, Offset: 1<<40 - agentapi.MaxInitLogPage, NextOffset: 1 << 40, Truncated: true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(ws.stateDir, "init.log"))
			if tc.log != nil {
				writeInitLog(t, ws, tc.log, tc.sparse)
			}
			var got initLogAnswer
			r := e.do("GET", "/api/workspaces/"+ws.id+"/init-log"+tc.query, nil)
			if r.Status != 200 {
				t.Fatalf("status %d: %.300s", r.Status, r.Body)
			}
			r.Decode(t, &got)
			tc.want.LogPath = "/workspace/.sortie/init.log"
			if tc.wantLen > 0 {
				if len(got.Content) != tc.wantLen {
					t.Errorf("content of %d bytes, want %d", len(got.Content), tc.wantLen)
				}
				got.Content = ""
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", clipAnswer(got), clipAnswer(tc.want))
			}
		})
	}
}

func clipAnswer(a initLogAnswer) initLogAnswer {
	if len(a.Content) > 200 {
		a.Content = a.Content[:100] + "…" + a.Content[len(a.Content)-100:]
	}
	return a
}

// Nonsense in the query is a 400 and a page past the end a 416, both
// with the JSON error shape and before anything is asked of the agent.
func TestInitLogBadQuery(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "init-log-query", nil)
	writeInitLog(t, ws, []byte("abc\n"), 0)
	tests := map[string]struct {
		query    string
		status   int
		wantCode string
	}{
		"negative offset":     {query: "?offset=-1", status: 400, wantCode: "bad_request"},
		"offset not a number": {query: "?offset=abc", status: 400, wantCode: "bad_request"},
		"offset overflows":    {query: "?offset=99999999999999999999", status: 400, wantCode: "bad_request"},
		"zero limit":          {query: "?limit=0", status: 400, wantCode: "bad_request"},
		"limit over the max":  {query: "?limit=1048577", status: 400, wantCode: "bad_request"},
		"limit a float":       {query: "?limit=1.5", status: 400, wantCode: "bad_request"},
		"past the end":        {query: "?offset=5", status: 416, wantCode: "offset_out_of_range"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got struct{ Error, Code string }
			if st := e.rawJSON("GET", "/api/workspaces/"+ws.id+"/init-log"+tc.query, nil, &got); st != tc.status || got.Code != tc.wantCode || got.Error == "" {
				t.Errorf("%d %+v, want %d %s", st, got, tc.status, tc.wantCode)
			}
		})
	}
}

// The memory bound: reading the default page of a 50 MiB init log, or
// paging through all of it, costs the operator a small, fixed amount.
func TestInitLogMemoryBound(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "init-log-memory", nil)
	writeInitLog(t, ws, bytes.Repeat([]byte("0123456789abcde\n"), 50<<20/16), 0)
	var n int64
	alloc := allocated(func() {
		for range 3 {
			n = discard(t, e.raw("GET", "/api/workspaces/"+ws.id+"/init-log", nil))
		}
	})
	t.Logf("3 reads of the default page: %d bytes each, %d allocated", n, alloc)
	if alloc > 2<<20 {
		t.Errorf("the operator allocated %d bytes for 3 reads of a 50 MiB init log, want at most %d", alloc, 2<<20)
	}
	var total int64
	alloc = allocated(func() {
		for off := int64(0); off < 50<<20; off += agentapi.MaxInitLogPage {
			total += discard(t, e.raw("GET", "/api/workspaces/"+ws.id+"/init-log?offset="+strconv.FormatInt(off, 10), nil))
		}
	})
	t.Logf("50 pages: %d bytes, %d allocated", total, alloc)
	if alloc > 16<<20 {
		t.Errorf("the operator allocated %d bytes paging through a 50 MiB init log, want well under its size", alloc)
	}
}

// Process output is read in pages when asked: limit= ends the stream
// after that many bytes, and the next page starts where it ended.
func TestProcessOutputPaged(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "output-pages", nil)
	if r := e.do("POST", "/api/workspaces/"+ws.id+"/processes", map[string]any{"id": "p1", "command": "head -c 300000 /dev/zero | tr '\\0' o"}); r.Status != 201 {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	testwait.Eventually(t, 20*time.Second, "the process to exit", func() (bool, string) {
		var p agentapi.Process
		e.do("GET", "/api/workspaces/"+ws.id+"/processes/p1", nil).Decode(t, &p)
		return !p.Running, fmt.Sprint(p.OutputBytes)
	})
	var offset int64
	pages := 0
	for {
		evs := e.ndjson(fmt.Sprintf("/api/workspaces/%s/processes/p1/output?offset=%d&limit=100000", ws.id, offset))
		pages++
		var n int64
		eof := false
		for _, ev := range evs {
			if ev["offset"].(float64) != float64(offset+n) {
				t.Fatalf("event at %v, want %d", ev["offset"], offset+n)
			}
			d, _ := ev["data"].(string)
			n += int64(len(d))
			eof = eof || ev["eof"] == true
		}
		if n > 100000 {
			t.Fatalf("a page of %d bytes, asked for 100000", n)
		}
		offset += n
		if eof {
			break
		}
		if pages > 10 {
			t.Fatal("no end after 10 pages")
		}
	}
	if offset != 300000 || pages != 4 {
		t.Errorf("%d bytes in %d pages, want 300000 in 4 (3 full, then the end)", offset, pages)
	}
}

// Nonsense in the output query is a 400 with the JSON error shape.
func TestProcessOutputBadQuery(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "output-query", nil)
	for name, q := range map[string]string{
		"negative offset": "offset=-1", "offset not a number": "offset=1e3", "follow not a boolean": "follow=maybe",
		"zero limit": "limit=0", "negative limit": "limit=-5", "limit over the max": "limit=" + strconv.Itoa(MaxOutputLimit+1),
		"limit overflows": "limit=99999999999999999999",
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do("GET", "/api/workspaces/"+ws.id+"/processes/p1/output?"+q, nil)
			var got struct{ Error, Code string }
			r.Decode(t, &got)
			if r.Status != 400 || got.Code != "bad_request" || got.Error == "" {
				t.Errorf("%d %+v, want 400 bad_request", r.Status, got)
			}
		})
	}
}

// The operator publishes its resident memory for the abuse suite to read.
func TestMetricsHaveResidentMemory(t *testing.T) {
	e := startOnAPIServer(t)
	res, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if !regexp.MustCompile(`(?m)^process_resident_memory_bytes [0-9.e+]+$`).Match(b) {
		t.Errorf("/metrics has no process_resident_memory_bytes:\n%.2000s", b)
	}
}

// A command or argument longer than the kernel would run is refused with
// a 400 before the agent is asked, and nothing starts.
func TestArgumentTooLong(t *testing.T) {
	e, port := startAgentREST(t, nil)
	ws := readyAgentWorkspace(t, e, port, "long-args", nil)
	long := "echo " + strings.Repeat("a", MaxArg)
	for name, tc := range map[string]struct {
		path string
		body map[string]any
	}{
		"exec command":    {"/exec", map[string]any{"command": "touch /tmp/ran; " + long}},
		"process command": {"/processes", map[string]any{"id": "p1", "command": long}},
		"process argv":    {"/processes", map[string]any{"id": "p2", "argv": []string{"echo", long}}},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do("POST", "/api/workspaces/"+ws.id+tc.path, tc.body)
			var got struct{ Error, Code string }
			r.Decode(t, &got)
			if r.Status != 400 || got.Code != "bad_request" {
				t.Errorf("%d %+v, want 400 bad_request", r.Status, got)
			}
		})
	}
	var list struct{ Processes []agentapi.Process }
	if e.do("GET", "/api/workspaces/"+ws.id+"/processes", nil).Decode(t, &list); len(list.Processes) != 0 {
		t.Errorf("processes started: %+v", list.Processes)
	}
}
