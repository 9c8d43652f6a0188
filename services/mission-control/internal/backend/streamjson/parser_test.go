package streamjson

import (
	"path/filepath"
	"strings"
	"testing"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/event"
)

// A CLI that streams an endless answer costs at most the text limit: the
// text is cut once with a marker, later deltas are dropped, and the turn
// still ends with one answer.
func TestStreamedTextIsBounded(t *testing.T) {
	p := New("claude", backend.ParserOptions{RunID: "r", TextLimit: 4096})
	var evs []event.Event
	delta := `{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"` + strings.Repeat("w", 100) + `"}}}`
	evs = append(evs, p.Feed([]byte(`{"type":"stream_event","event":{"type":"message_start","message":{"id":"m1","model":"claude"}}}`))...)
	evs = append(evs, p.Feed([]byte(`{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text"}}}`))...)
	for range 10000 {
		evs = append(evs, p.Feed([]byte(delta))...)
	}
	evs = append(evs, p.Finish(backend.Exit{})...)
	if err := backendtest.Check(evs, true); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == event.KindTextDelta {
			n++
			if len(e.Content) > 4096+len(backend.CutMarker(4096)) {
				t.Fatalf("text of %d bytes", len(e.Content))
			}
		}
	}
	if n != 41 {
		t.Errorf("%d text_delta events for a 1 MB answer, want 41 (4 KiB and the cut)", n)
	}
}

// FuzzParse: random lines never panic, never break the event invariants
// and never make more than the input (backendtest.Fuzz), for both CLIs that
// speak stream-json.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"claudecode", "amp"} {
		for _, b := range backendtest.FixturesIn(f, filepath.Join("..", dir, "testdata")) {
			f.Add(b, 0, dir == "amp")
			f.Add(b, 1, dir == "amp")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, code int, amp bool) {
		cli := "claude"
		if amp {
			cli = "amp"
		}
		backendtest.Fuzz(t, New(cli, backend.ParserOptions{RunID: "r", TextLimit: 256}), data, code)
	})
}
