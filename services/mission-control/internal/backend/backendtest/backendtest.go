// Package backendtest holds what the parser tests of every backend share:
// feeding fixture files, golden files, and the invariants every parser must
// keep whatever a CLI prints.
package backendtest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

var update = flag.Bool("update", false, "rewrite the golden files from the parsers' output")

// Parser is what every backend parser provides.
type Parser interface {
	Feed(line []byte) []event.Event
	Finish(x backend.Exit) []event.Event
	Summary() backend.Summary
}

// Run feeds every line of data to p, then finishes with x.
func Run(p Parser, data []byte, x backend.Exit) []event.Event {
	var evs []event.Event
	// ReadLines cannot fail on a bytes.Reader.
	_ = backend.ReadLines(bytes.NewReader(data), backend.DefaultMaxLine, func(l []byte) {
		evs = append(evs, p.Feed(l)...)
	})
	return append(evs, p.Finish(x)...)
}

// Result is what a golden file holds.
type Result struct {
	Events  []event.Event   `json:"events"`
	Summary backend.Summary `json:"summary"`
}

// Golden runs the fixture testdata/<name>.jsonl through p, checks the
// invariants, and compares events and summary with testdata/<name>.golden.json
// (rewritten with -update).
func Golden(t *testing.T, p Parser, name string, x backend.Exit) Result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got := Result{Events: Run(p, data, x), Summary: p.Summary()}
	if err := Check(got.Events, true); err != nil {
		t.Errorf("invariants: %v", err)
	}
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	gotJSON = append(gotJSON, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, gotJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
		t.Errorf("%s: events differ from the golden file (-want +got):\n%s", name, diff)
	}
	return got
}

// Fixtures returns the contents of every testdata/*.jsonl, to seed fuzzing.
func Fixtures(f *testing.F) [][]byte {
	f.Helper()
	return FixturesIn(f, "testdata")
}

// FixturesIn returns the contents of every *.jsonl in dir.
func FixturesIn(f *testing.F, dir string) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Check verifies the invariants of a turn's events. finished says whether
// Finish was called (then exactly one assistant_message ended the turn and
// every tool call has a result).
func Check(evs []event.Event, finished bool) error {
	calls := map[string]bool{} // id → has a result
	var text, thinking string
	answers := 0
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if _, err := json.Marshal(ev); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		switch ev.Kind {
		case event.KindToolCall:
			if _, dup := calls[ev.ToolCallID]; dup {
				return fmt.Errorf("event %d: second tool_call %q", i, ev.ToolCallID)
			}
			calls[ev.ToolCallID] = false
			if i+1 >= len(evs) || evs[i+1].Kind != event.KindMissionActivity {
				return fmt.Errorf("event %d: tool_call %q without mission_activity", i, ev.ToolCallID)
			}
		case event.KindToolResult:
			done, ok := calls[ev.ToolCallID]
			if !ok {
				return fmt.Errorf("event %d: tool_result %q without a prior tool_call", i, ev.ToolCallID)
			}
			if done {
				return fmt.Errorf("event %d: second tool_result %q", i, ev.ToolCallID)
			}
			calls[ev.ToolCallID] = true
		case event.KindTextDelta:
			if ev.Delta == "" || ev.Content != text+ev.Delta {
				return fmt.Errorf("event %d: text_delta content is not the previous text plus the delta", i)
			}
			text = ev.Content
		case event.KindThinking:
			if ev.Done {
				thinking = ""
				if strings.TrimSpace(ev.Content) == "" {
					return fmt.Errorf("event %d: empty thinking", i)
				}
				continue
			}
			if ev.Delta == "" || ev.Content != thinking+ev.Delta {
				return fmt.Errorf("event %d: thinking content is not the previous thinking plus the delta", i)
			}
			thinking = ev.Content
		case event.KindAssistantMessage:
			answers++
		}
	}
	if answers > 1 {
		return fmt.Errorf("%d assistant_messages in one turn", answers)
	}
	if !finished {
		return nil
	}
	if answers != 1 {
		return fmt.Errorf("finished turn has %d assistant_messages, want 1", answers)
	}
	for id, done := range calls {
		if !done {
			return fmt.Errorf("tool_call %q has no result after Finish", id)
		}
	}
	return nil
}

// Fuzz feeds data to a fresh parser line by line, finishes it with code,
// and fails on any broken invariant. Parsers must never panic, and never
// make more than their input: no event is larger than a fixed multiple of
// the input (escaping a non-JSON tool output as a JSON string is the worst
// case) and there are no more events than input bytes, give or take the
// few that end a turn.
func Fuzz(t *testing.T, p Parser, data []byte, code int) {
	var evs []event.Event
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		evs = append(evs, p.Feed(l)...)
		if err := Check(evs, false); err != nil {
			t.Fatalf("after line %q: %v", l, err)
		}
	}
	evs = append(evs, p.Finish(backend.Exit{Code: code, Cancelled: code == 130})...)
	if err := Check(evs, true); err != nil {
		t.Fatal(err)
	}
	if err := Bounded(evs, len(data)); err != nil {
		t.Fatal(err)
	}
}

// Bounded checks that events made from n bytes of output are bounded by
// it (see Fuzz).
func Bounded(evs []event.Event, n int) error {
	if len(evs) > n+16 {
		return fmt.Errorf("%d events from %d bytes of output", len(evs), n)
	}
	for i, e := range evs {
		b, _ := json.Marshal(e)
		if len(b) > 8*n+4096 {
			return fmt.Errorf("event %d (%s) is %d bytes, from %d bytes of output", i, e.Kind, len(b), n)
		}
	}
	return nil
}

// Kinds lists the kinds of evs, for compact assertions.
func Kinds(evs []event.Event) []event.Kind {
	out := make([]event.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}
