package agent

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// reference is what the REST API shows of a whole log: its last n lines,
// trailing line breaks left out, and how many lines it has.
func reference(log []byte, n int) ([]byte, int64) {
	text := bytes.TrimRight(log, "\n")
	if len(text) == 0 {
		return nil, 0
	}
	lines := bytes.Split(text, []byte("\n"))
	total := int64(len(lines))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n")), total
}

func TestInitLogPages(t *testing.T) {
	tests := map[string]struct {
		log           string
		tail          int
		offset, limit int64
		want          string
		wantStart     int64
	}{
		"tail of a short log":          {log: "a\nb\nc\n", tail: 2, limit: 100, want: "b\nc", wantStart: 2},
		"tail of more than there is":   {log: "a\nb\n", tail: 5, limit: 100, want: "a\nb"},
		"tail without a final break":   {log: "a\nb", tail: 1, limit: 100, want: "b", wantStart: 2},
		"tail of only line breaks":     {log: "\n\n\n", tail: 3, limit: 100, want: ""},
		"tail within the window":       {log: "one\ntwo\nthree\n", tail: 3, limit: 8, want: "o\nthree", wantStart: 6},
		"window cut at a break":        {log: "one\ntwo\nthree\n", tail: 3, limit: 7, want: "\nthree", wantStart: 7},
		"window starts inside a rune":  {log: "x\u20acy", tail: 1, limit: 3, want: "y", wantStart: 4},
		"range":                        {log: "0123456789", offset: 2, limit: 3, want: "234", wantStart: 2},
		"range to the end":             {log: "0123456789", offset: 8, limit: 30, want: "89", wantStart: 8},
		"range cut before a rune":      {log: "ab\u20accd", offset: 0, limit: 4, want: "ab"},
		"range cut after a whole rune": {log: "ab\u20accd", offset: 0, limit: 5, want: "ab\u20ac"},
		"range of a rune's start only": {log: "\u20ac\u20ac", offset: 0, limit: 2, want: "\xe2\x82"},
		"empty range at the end":       {log: "abc", offset: 3, limit: 5, want: "", wantStart: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := strings.NewReader(tc.log)
			var p logPage
			var err error
			if tc.tail > 0 {
				p, err = tailPage(f, int64(len(tc.log)), tc.tail, tc.limit)
			} else {
				p, err = rangePage(f, int64(len(tc.log)), tc.offset, tc.limit)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := tc.log[p.start:p.end]
			if p.data != nil && string(p.data) != got {
				t.Errorf("data %q for bytes %d-%d (%q)", p.data, p.start, p.end, got)
			}
			if got != tc.want || p.start != tc.wantStart {
				t.Errorf("page %q at %d, want %q at %d", got, p.start, tc.want, tc.wantStart)
			}
		})
	}
}

func TestCountLines(t *testing.T) {
	for _, log := range []string{"", "\n", "\n\n", "a", "a\n", "a\nb", "a\n\nb\n\n\n", "\n\na", strings.Repeat("x\n", 200000) + strings.Repeat("\n", 300000)} {
		_, want := reference([]byte(log), 1)
		got, err := countLines(context.Background(), strings.NewReader(log), int64(len(log)))
		if err != nil || got != want {
			t.Errorf("%.20q (%d bytes): %d lines, %v; want %d", log, len(log), got, err, want)
		}
	}
}

func TestParseInitLogQuery(t *testing.T) {
	tests := map[string]struct {
		query   string
		want    agentapi.InitLogQuery
		wantErr bool
	}{
		"nothing":          {want: agentapi.InitLogQuery{Limit: agentapi.MaxInitLogPage}},
		"offset and limit": {query: "offset=5&limit=10", want: agentapi.InitLogQuery{Offset: 5, Limit: 10}},
		"tail":             {query: "tail_lines=500&limit=1024", want: agentapi.InitLogQuery{TailLines: 500, Limit: 1024}},
		"limit too large":  {query: "limit=1048577", wantErr: true},
		"zero limit":       {query: "limit=0", wantErr: true},
		"negative offset":  {query: "offset=-1", wantErr: true},
		"too many lines":   {query: "tail_lines=10001", wantErr: true},
		"zero lines":       {query: "tail_lines=0", wantErr: true},
		"both":             {query: "offset=1&tail_lines=5", wantErr: true},
		"not a number":     {query: "offset=x", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.query)
			got, err := ParseInitLogQuery(v)
			if tc.wantErr {
				if !errors.Is(err, errBadRequest) {
					t.Errorf("err = %v, want a bad request", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("%+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzInitLogPage: for any log and any query, a page lies inside the log
// and within the limit; a tail page is the end of what the REST API shows
// of the whole log; and the line count is that of the whole log.
func FuzzInitLogPage(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), 2, int64(0), int64(100))
	f.Add([]byte("x\xe2\x82\xacy\n\n"), 1, int64(0), int64(3))
	f.Add([]byte("\xe2\x82\xac\xe2\x82\xac"), 0, int64(1), int64(2))
	f.Add([]byte("\n\n\n"), 0, int64(3), int64(1))
	f.Fuzz(func(t *testing.T, log []byte, tail int, offset, limit int64) {
		size := int64(len(log))
		if limit <= 0 || limit > agentapi.MaxInitLogPage {
			limit = agentapi.MaxInitLogPage
		}
		r := bytes.NewReader(log)
		var p logPage
		var err error
		if tail > 0 && tail <= agentapi.MaxInitLogTailLines {
			p, err = tailPage(r, size, tail, limit)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := reference(log, tail)
			got := log[p.start:p.end]
			if !bytes.HasSuffix(want, got) || (limit >= size && !bytes.Equal(got, want)) {
				t.Fatalf("tail page %q, want the end of %q", got, want)
			}
		} else {
			if offset < 0 || offset > size {
				return
			}
			if p, err = rangePage(r, size, offset, limit); err != nil {
				t.Fatal(err)
			}
			if p.start != offset || (p.end == p.start && offset < size) {
				t.Fatalf("page %d-%d from %d of %d", p.start, p.end, offset, size)
			}
		}
		if p.start < 0 || p.start > p.end || p.end > size || p.end-p.start > limit {
			t.Fatalf("page %d-%d of a %d-byte log, limit %d", p.start, p.end, size, limit)
		}
		lines, err := countLines(context.Background(), r, size)
		if _, want := reference(log, 1); err != nil || lines != want {
			t.Fatalf("%d lines, %v; want %d", lines, err, want)
		}
	})
}

// FuzzParseInitLogQuery: any query is refused as a bad request or is
// within bounds.
func FuzzParseInitLogQuery(f *testing.F) {
	for _, s := range []string{"", "offset=5&limit=10", "tail_lines=500&limit=1024", "limit=1048577", "offset=1&tail_lines=5",
		"offset=-1", "tail_lines=99999999999999999999", "limit=%2B5", "offset=0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseInitLogQuery(v)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("err = %v", err)
			}
			return
		}
		if q.Offset < 0 || q.Limit < 1 || q.Limit > agentapi.MaxInitLogPage || q.TailLines < 0 || q.TailLines > agentapi.MaxInitLogTailLines ||
			(q.TailLines > 0 && q.Offset != 0) {
			t.Fatalf("accepted %+v from %q", q, raw)
		}
	})
}
