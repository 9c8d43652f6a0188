package library

import (
	"archive/tar"
	"bytes"
	"slices"
	"testing"
)

func tarOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte("x"))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestItemsOf(t *testing.T) {
	data := tarOf(t,
		".opencode/skill/greet/SKILL.md", ".opencode/skill/greet/ref/notes.md", ".claude/skills/greet/SKILL.md",
		".agents/skills/greet/SKILL.md", ".opencode/skill/review/SKILL.md", ".opencode/tool/now.ts",
		".opencode/tool/lib/helper.ts", "README.md")
	got, err := itemsOf(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"skill/greet", "skill/review", "tool/now"}; !slices.Equal(got, want) {
		t.Errorf("itemsOf = %v, want %v", got, want)
	}
	if _, err := itemsOf([]byte("not a tar at all, but long enough to be read as a header block")); err == nil {
		t.Error("a broken bundle was read without error")
	}
}

func TestPathsOf(t *testing.T) {
	tests := map[string][]string{
		"skill/greet": {".opencode/skill/greet", ".claude/skills/greet", ".agents/skills/greet"},
		"tool/now":    {".opencode/tool/now.ts"},
		"skill/../x":  nil,
		"skill/.git":  nil,
		"skill/":      nil,
		"rule/r":      nil,
		"nonsense":    nil,
	}
	for item, want := range tests {
		if got := pathsOf(item); !slices.Equal(got, want) {
			t.Errorf("pathsOf(%q) = %v, want %v", item, got, want)
		}
	}
}
