package procs

import (
	"strings"
	"testing"
)

func TestCut(t *testing.T) {
	euro := "\u20ac" // three bytes
	tests := map[string]struct {
		in        string
		full      bool
		wantChunk string
		wantWhole bool
	}{
		"lines":                 {in: "a\nb\nc", wantChunk: "a\nb\n", wantWhole: true},
		"one line":              {in: "abc\n", wantChunk: "abc\n", wantWhole: true},
		"partial line":          {in: "abc", wantChunk: "abc"},
		"full, no newline":      {in: "abcd", full: true, wantChunk: "abcd"},
		"full, split rune":      {in: "ab" + euro[:2], full: true, wantChunk: "ab"},
		"full, complete rune":   {in: "ab" + euro, full: true, wantChunk: "ab" + euro},
		"not full, split rune":  {in: "ab" + euro[:1], wantChunk: "ab" + euro[:1]},
		"full, binary garbage":  {in: "\xff\xfe\xfd\xfc", full: true, wantChunk: "\xff\xfe\xfd\xfc"},
		"newline beats the cap": {in: strings.Repeat("x", 10) + "\n" + "yy", full: true, wantChunk: strings.Repeat("x", 10) + "\n", wantWhole: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			chunk, whole := cut([]byte(tc.in), tc.full)
			if string(chunk) != tc.wantChunk || whole != tc.wantWhole {
				t.Errorf("cut(%q, %v) = %q, %v; want %q, %v", tc.in, tc.full, chunk, whole, tc.wantChunk, tc.wantWhole)
			}
		})
	}
}
