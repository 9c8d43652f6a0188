package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// benchLibrary is a library holding n skills, committed once through the
// git binary so that setting up does not dominate the benchmark.
func benchLibrary(b *testing.B, n int) *library {
	b.Helper()
	l := startLibrary(b, map[string]string{"SORTIE_LIBRARY_SEED": "false", "SORTIE_LOG_LEVEL": "error"})
	for i := range n {
		dir := filepath.Join(l.repoDir(), "skill", fmt.Sprintf("skill-%04d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		md := fmt.Sprintf("---\nname: skill-%04d\ndescription: Benchmark skill number %d, which does one thing well.\nsetup_commands: [\"npm i\"]\n---\n# Skill %d\n\n%s", i, i, i, bytes.Repeat([]byte("Some instructions for the agent. "), 40))
		if err := os.WriteFile(filepath.Join(dir, "SKILL.md"), []byte(md), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "notes.md"), []byte("# notes\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	git(b, l.repoDir(), "add", "-A")
	git(b, l.repoDir(), "commit", "-q", "-m", "many skills")
	l.restart() // the service picks up the new HEAD
	return l
}

func get(b *testing.B, c *http.Client, l *library, path string) {
	req, _ := http.NewRequest("GET", l.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+l.alice)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
}

// BenchmarkList1000Skills is GET /api/library/skill over loopback HTTP
// with 1,000 skills: read every SKILL.md, parse its frontmatter, encode.
func BenchmarkList1000Skills(b *testing.B) {
	l := benchLibrary(b, 1000)
	c := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		get(b, c, l, "/api/library/skill")
	}
}

// BenchmarkGetSkillOf1000 is GET /api/library/skill/{name} with 1,000
// skills in the library.
func BenchmarkGetSkillOf1000(b *testing.B) {
	l := benchLibrary(b, 1000)
	c := &http.Client{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		get(b, c, l, fmt.Sprintf("/api/library/skill/skill-%04d", i%1000))
		i++
	}
}

// BenchmarkSaveSkill is PUT /api/library/skill/{name} with 1,000 skills in
// the library and no remote: validate, write atomically (fsync), stage,
// commit, answer with the item. Each save changes the content, so each is
// a commit.
func BenchmarkSaveSkill(b *testing.B) {
	l := benchLibrary(b, 1000)
	c := &http.Client{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		body, _ := json.Marshal(content(fmt.Sprintf("---\ndescription: version %d\n---\nBody %d\n", i, i)))
		req, _ := http.NewRequest("PUT", l.url+"/api/library/skill/skill-0007", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.alice)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("save: %d", resp.StatusCode)
		}
		i++
	}
}

// BenchmarkSaveSkillWithRemote is BenchmarkSaveSkill with a push to a bare
// remote on the same disk after every commit (the remote runs
// git-receive-pack, as any remote would).
func BenchmarkSaveSkillWithRemote(b *testing.B) {
	remote := newRemote(b)
	l := startLibrary(b, map[string]string{"SORTIE_LIBRARY_REMOTE": remote, "SORTIE_LOG_LEVEL": "error"})
	c := &http.Client{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		body, _ := json.Marshal(content(fmt.Sprintf("version %d", i)))
		req, _ := http.NewRequest("PUT", l.url+"/api/library/command/bench", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.alice)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("save: %d", resp.StatusCode)
		}
		i++
	}
}

// BenchmarkBundle1000Skills is GET /api/library/bundle for 10 named skills
// out of 1,000, read from the commit's tree.
func BenchmarkBundle10Of1000Skills(b *testing.B) {
	l := benchLibrary(b, 1000)
	c := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		get(b, c, l, "/api/library/bundle?skills=skill-0001,skill-0100,skill-0200,skill-0300,skill-0400,skill-0500,skill-0600,skill-0700,skill-0800,skill-0900&tools=")
	}
}
