package items

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"deploy": true, "Deploy_2": true, "a.b": true, "v1.2-rc": true,
		"": false, ".": false, "..": false, ".hidden": false, "a..b": false, "a/b": false, `a\b`: false,
		"%2e%2e": false, "a%2Fb": false, "a b": false, "a\x00b": false, "é": false, strings.Repeat("x", 101): false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestValidFilePath(t *testing.T) {
	for p, ok := range map[string]bool{
		"notes.md": true, "scripts/run.sh": true, "/lead.md": true,
		"": false, "../x": false, "a/../b": false, "a//b": false, ".git/config": false, "a/.env": false, strings.Repeat("a/", 9) + "x": false,
	} {
		if err := ValidFilePath(p); (err == nil) != ok {
			t.Errorf("ValidFilePath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestSplitFrontmatter(t *testing.T) {
	cases := map[string]struct {
		in                string
		wantFront, wantBo string
		wantHas, wantErr  bool
	}{
		"none":          {in: "# Title\n", wantBo: "# Title\n"},
		"simple":        {in: "---\nname: x\n---\nbody\n", wantFront: "name: x\n", wantBo: "body\n", wantHas: true},
		"crlf":          {in: "---\r\nname: x\r\n---\r\nbody", wantFront: "name: x\r\n", wantBo: "body", wantHas: true},
		"dots close":    {in: "---\na: 1\n...\nrest", wantFront: "a: 1\n", wantBo: "rest", wantHas: true},
		"empty":         {in: "---\n---\n", wantHas: true},
		"unclosed":      {in: "---\nname: x\nbody", wantHas: true, wantErr: true},
		"only opener":   {in: "---", wantHas: true, wantErr: true},
		"rule mid-body": {in: "text\n---\nmore", wantBo: "text\n---\nmore"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			front, body, has, err := splitFrontmatter(tc.in)
			if (err != nil) != tc.wantErr || has != tc.wantHas {
				t.Fatalf("has=%v err=%v", has, err)
			}
			if err == nil && (front != tc.wantFront || body != tc.wantBo) {
				t.Errorf("front %q body %q", front, body)
			}
		})
	}
}

func TestEnsureSkillFrontmatter(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"no frontmatter": {"Body", "---\nname: s\ndescription: Does things.\n---\nBody"},
		"name missing":   {"---\ndescription: Mine\n---\nBody", "---\nname: s\ndescription: Mine\n---\nBody"},
		"complete":       {"---\nname: other\ndescription: d\n---\nB", "---\nname: other\ndescription: d\n---\nB"},
		"quotes":         {"x", "---\nname: s\ndescription: Does things.\n---\nx"},
	}
	for name, tc := range cases {
		if got := EnsureSkillFrontmatter(tc.in, "s", "Does things."); got != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
	if got := EnsureSkillFrontmatter("x", "s", "a: b # c"); got != "---\nname: s\ndescription: 'a: b # c'\n---\nx" {
		t.Errorf("YAML-special description not quoted: %q", got)
	}
}

func TestCommentDescription(t *testing.T) {
	for in, want := range map[string]string{
		"#!/bin/bash\n# Description: Installs bun.\nx": "Installs bun.",
		"#!/bin/sh\n\n# installs go\n":                 "installs go",
		"echo hi\n# late":                              "",
	} {
		if got := commentDescription(in, "#"); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"// Counts words.\nexport {}": "Counts words.",
		"/**\n * Fetches a URL.\n */": "Fetches a URL.",
		"import x from 'y'":           "",
	} {
		if got := commentDescription(in, "//"); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestListSkipsWhatIsNotAnItem(t *testing.T) {
	fsys := fstest.MapFS{
		"skill/b/SKILL.md":          {Data: []byte("---\ndescription: B\n---\n")},
		"skill/a/SKILL.md":          {Data: []byte("---\ndescription: [broken\n---\n")},
		"skill/no-marker/notes.md":  {Data: []byte("x")},
		"skill/.hidden/SKILL.md":    {Data: []byte("x")},
		"command/z.md":              {Data: []byte("z")},
		"command/a-b.md":            {Data: []byte("ab")},
		"command/a.md":              {Data: []byte("a")},
		"command/readme.txt":        {Data: []byte("x")},
		"workspace-template/t.json": {Data: []byte("{not json")},
	}
	names := func(k Kind) string {
		list, err := List(fsys, k, View{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range list {
			out = append(out, fmt.Sprint(it))
		}
		return strings.Join(out, " | ")
	}
	if got := names(Skill); !strings.HasPrefix(got, "{a  skill/a") || !strings.Contains(got, "{b B skill/b") || strings.Count(got, "|") != 1 {
		t.Errorf("skills: %s", got)
	}
	if got := names(Command); !strings.HasPrefix(got, "{a  command/a.md") || !strings.Contains(got, "| {a-b ") {
		t.Errorf("commands not sorted by name: %s", got)
	}
	if got := names(Template); !strings.HasPrefix(got, "{t  workspace-template/t.json") {
		t.Errorf("a broken template still lists: %s", got)
	}
	if _, err := Get(fsys, Template, "t", View{}); err == nil {
		t.Errorf("get of a broken template should fail")
	} else if e := (*Error)(nil); !errors.As(err, &e) || e.Code != CodeInvalidStoredItem {
		t.Errorf("error %v", err)
	}
	if got := names(Rule); got != "" {
		t.Errorf("missing folder: %q", got)
	}
}

// BenchmarkListSkillsUncached is the work behind the first skill list
// after a change: read and parse the frontmatter of 1,000 SKILL.md files.
func BenchmarkListSkillsUncached(b *testing.B) {
	fsys := fstest.MapFS{}
	for i := range 1000 {
		fsys[fmt.Sprintf("skill/s%04d/SKILL.md", i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf(
			"---\nname: s%04d\ndescription: Skill number %d.\nsetup_commands: [\"npm i\"]\n---\n%s", i, i, strings.Repeat("Text. ", 200)))}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := List(fsys, Skill, View{}); err != nil {
			b.Fatal(err)
		}
	}
}
