package items

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"sortie.dev/services/library/internal/secrets"
)

// A save's body and an item's file come from users: whatever they hold,
// parsing must not panic, and what Prepare accepts must read back.

func FuzzSplitFrontmatter(f *testing.F) {
	for _, s := range []string{
		"", "---", "---\n", "---\nname: x\n---\nbody", "---\r\nname: x\r\n...\r\n", "# no front\n",
		"---\n---\n", "---\nname: [unclosed\n---\n", "---\n\x00\n---\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		front, body, has, err := splitFrontmatter(content)
		if !has {
			if err != nil || body != content {
				t.Fatalf("no frontmatter: body %q err %v, want the content unchanged", body, err)
			}
			return
		}
		if err != nil {
			return
		}
		if len(front)+len(body) > len(content)+1 {
			t.Fatalf("frontmatter %d + body %d bytes from %d of content", len(front), len(body), len(content))
		}
		var meta skillMeta
		_ = parseFrontmatter(content, &meta) // any YAML, however odd, is an error at worst
	})
}

func FuzzPrepareAndRead(f *testing.F) {
	sealer, err := secrets.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	seeds := []struct {
		kind Kind
		body string
	}{
		{Skill, `{"content":"---\nname: deploy\ndescription: Ship it\n---\n# Deploy\n"}`},
		{Skill, `{"content":"---\nsetup_commands: [\"apt-get install -y jq\"]\n---\n"}`},
		{Command, `{"content":"---\ndescription: Review\nparams:\n  - name: pr\n    required: true\n---\nReview $pr"}`},
		{Agent, `{"content":"---\nmodel: x\ntools: [bash]\n---\nYou are"}`},
		{Rule, `{"content":"Always <encrypted>s3cret</encrypted> here"}`},
		{Tool, `{"content":"#!/bin/sh\necho hi\n"}`},
		{InitScript, `{"content":"# init\napt-get update\n"}`},
		{MCP, `{"command":"npx","args":["-y","srv"],"env":{"TOKEN":"<encrypted>t</encrypted>"}}`},
		{MCP, `{"url":"https://mcp.example/sse","headers":{"A":"b"}}`},
		{Template, `{"name":"go","image":"debian","env_vars":{"K":"<encrypted>v</encrypted>"},"encrypted_keys":["K"]}`},
		{Template, `{"skills":["a"],"init_script":"echo"}`},
		{Skill, `{"content":null}`}, {Skill, `[]`}, {Skill, ``}, {MCP, `{"command":1}`},
	}
	for _, s := range seeds {
		f.Add(string(s.kind), s.body, false)
		f.Add(string(s.kind), s.body, true)
	}
	f.Fuzz(func(t *testing.T, kind, body string, masked bool) {
		k, ok := ParseKind(kind)
		if !ok {
			return
		}
		view := View{Sealer: sealer, Masked: masked}
		fsys := fstest.MapFS{}
		change, err := Prepare(fsys, k, "item", []byte(body), view)
		if err != nil {
			var inv *Error
			if !errors.As(err, &inv) && !errors.Is(err, secrets.ErrNoStoredSecret) && !errors.Is(err, secrets.ErrUnmatchedPlaceholder) {
				t.Fatalf("Prepare refused %q with %T %v: want an invalid-input error", body, err, err)
			}
			return
		}
		for _, w := range change.Writes {
			fsys[w.Path] = &fstest.MapFile{Data: w.Data}
		}
		got, err := Get(fsys, k, "item", view)
		if err != nil {
			t.Fatalf("an item Prepare accepted does not read back: %v\nbody %q", err, body)
		}
		out, err := json.Marshal(got)
		if err != nil || !utf8.Valid(out) {
			t.Fatalf("the item does not encode: %v", err)
		}
		if masked && strings.Contains(string(out), "<encrypted v=") {
			t.Fatalf("a masked reader sees ciphertext: %s", out)
		}
		if _, err := List(fsys, k, view); err != nil {
			t.Fatalf("list after a save: %v", err)
		}
	})
}

// FuzzValidNames: a name or skill file path that passes validation stays
// inside its folder, whatever the caller sent.
func FuzzValidNames(f *testing.F) {
	for _, s := range []string{"deploy", "a/b.md", "../x", "a/../../b", "/abs.md", `a\..\b`, "a/./b", ".git/HEAD", "%2e%2e/x", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidName(p) == nil && (strings.ContainsAny(p, "/\\\x00") || strings.HasPrefix(p, ".")) {
			t.Fatalf("ValidName accepted %q", p)
		}
		if ValidFilePath(p) != nil {
			return
		}
		clean := path.Clean("/skills/x/" + strings.TrimPrefix(p, "/"))
		if !strings.HasPrefix(clean, "/skills/x/") {
			t.Fatalf("ValidFilePath accepted %q, which leaves its folder: %s", p, clean)
		}
		for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") || strings.ContainsAny(seg, "\\\x00") {
				t.Fatalf("ValidFilePath accepted %q with the segment %q", p, seg)
			}
		}
	})
}
