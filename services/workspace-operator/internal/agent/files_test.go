package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func readFile(t *testing.T, c *agentapi.Client, path string) (string, error) {
	t.Helper()
	rc, err := c.GetFile(testwait.Context(t, 10*time.Second), path, 1<<30)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestFilesPutGetDelete(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	p := filepath.Join(h.root, "skills", "deep", "tool.sh")
	if err := h.client.PutFile(ctx, p, 0o755, strings.NewReader("#!/bin/sh\necho hi\n")); err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("stat: %v, mode %v", err, fi.Mode())
	}
	if got, err := readFile(t, h.client, p); err != nil || got != "#!/bin/sh\necho hi\n" {
		t.Fatalf("GetFile = %q, %v", got, err)
	}
	// Overwrite: new content, default mode, no temp files left beside it.
	if err := h.client.PutFile(ctx, p, 0, strings.NewReader("v2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := readFile(t, h.client, p); got != "v2" {
		t.Errorf("after overwrite: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("dir has %d entries, want only the file", len(entries))
	}

	if _, err := readFile(t, h.client, filepath.Join(h.root, "missing")); errCode(err) != "not_found" {
		t.Errorf("GET missing: %v", err)
	}
	if _, err := readFile(t, h.client, filepath.Join(h.root, "skills")); errCode(err) != "is_directory" {
		t.Errorf("GET dir: %v", err)
	}
	if err := h.client.DeleteFile(ctx, filepath.Join(h.root, "skills"), false); errCode(err) != "conflict" {
		t.Errorf("DELETE non-empty dir: %v, want conflict", err)
	}
	if err := h.client.DeleteFile(ctx, p, false); err != nil {
		t.Errorf("DELETE file: %v", err)
	}
	if err := h.client.DeleteFile(ctx, p, false); errCode(err) != "not_found" {
		t.Errorf("DELETE again: %v, want not_found", err)
	}
	if err := h.client.DeleteFile(ctx, filepath.Join(h.root, "skills"), true); err != nil {
		t.Errorf("DELETE recursive: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.root, "skills")); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if err := h.client.DeleteFile(ctx, h.root, true); errCode(err) != "path_not_allowed" {
		t.Errorf("DELETE root: %v, want path_not_allowed", err)
	}
	if err := h.client.PutFile(ctx, filepath.Join(h.root, "m"), 0o644, strings.NewReader("")); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if err := h.client.PutFile(ctx, filepath.Join(h.root, "m", "under-a-file"), 0o644, strings.NewReader("x")); errCode(err) != "bad_request" {
		t.Errorf("PUT below a file: %v, want bad_request", err)
	}
	if _, err := readFile(t, h.client, filepath.Join(h.root, "m", "under-a-file")); errCode(err) != "bad_request" {
		t.Errorf("GET below a file: %v, want bad_request", err)
	}
	if err := h.client.PutFile(ctx, filepath.Join(h.root, "work"), 0o644, strings.NewReader("x")); errCode(err) != "is_directory" {
		t.Errorf("PUT over a directory: %v, want is_directory", err)
	}
}

func TestFilesPathEscapes(t *testing.T) {
	h := startAgent(t, nil)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(h.root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(h.root, "secret-link")); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"relative":             "work/file",
		"dot-dot":              h.root + "/work/../../etc/passwd",
		"dot-dot staying in":   h.root + "/work/../file",
		"outside roots":        "/etc/passwd",
		"through symlink dir":  h.root + "/escape/new-file",
		"deep through symlink": h.root + "/escape/a/b/c",
		"symlink to file":      h.root + "/secret-link",
		"prefix sibling":       h.root + "-other/file",
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			ctx := testwait.Context(t, 10*time.Second)
			if err := h.client.PutFile(ctx, p, 0o644, strings.NewReader("pwned")); errCode(err) != "path_not_allowed" {
				t.Errorf("PUT: %v, want path_not_allowed", err)
			}
			if _, err := readFile(t, h.client, p); errCode(err) != "path_not_allowed" {
				t.Errorf("GET: %v, want path_not_allowed", err)
			}
			if err := h.client.DeleteFile(ctx, p, true); errCode(err) != "path_not_allowed" {
				t.Errorf("DELETE: %v, want path_not_allowed", err)
			}
			if _, err := h.client.UploadTar(ctx, p, true, bytes.NewReader(makeTar(t, false, regular("f", "x")))); errCode(err) != "path_not_allowed" {
				t.Errorf("tar: %v, want path_not_allowed", err)
			}
		})
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Errorf("outside dir now has %d entries", len(entries))
	}
}

type entry struct {
	hdr  tar.Header
	body string
}

func regular(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body}
}
func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}
func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}}
}
func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

func makeTar(t *testing.T, gz bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// tree lists a directory as path -> content ("dir" for directories, "-> x"
// for symlinks).
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case fi.IsDir():
			out[rel] = "dir"
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUploadTar(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	archive := []entry{
		dir("./"), dir("skill/"), regular("skill/SKILL.md", "# skill\n"),
		regular("skill/scripts/run.sh", "echo run\n"), symlink("skill/latest", "scripts/run.sh"),
		hardlink("skill/copy.md", "skill/SKILL.md"), symlink("up", "skill/../skill/SKILL.md"),
	}
	wantTree := map[string]string{
		"skill": "dir", "skill/SKILL.md": "# skill\n", "skill/scripts": "dir", "skill/scripts/run.sh": "echo run\n",
		"skill/latest": "-> scripts/run.sh", "skill/copy.md": "# skill\n", "up": "-> skill/SKILL.md",
	}
	for _, gz := range []bool{false, true} {
		dst := filepath.Join(h.root, "tar", map[bool]string{false: "plain", true: "gzip"}[gz])
		res, err := h.client.UploadTar(ctx, dst, false, bytes.NewReader(makeTar(t, gz, archive...)))
		if err != nil {
			t.Fatalf("gzip=%v: %v", gz, err)
		}
		if diff := cmp.Diff(&agentapi.TarResult{Files: 3, Bytes: 17}, res); diff != "" {
			t.Errorf("gzip=%v result (-want +got):\n%s", gz, diff)
		}
		if diff := cmp.Diff(wantTree, tree(t, dst)); diff != "" {
			t.Errorf("gzip=%v tree (-want +got):\n%s", gz, diff)
		}
	}
	if _, err := h.client.UploadTar(ctx, filepath.Join(h.root, "bad"), false, strings.NewReader("not a tar at all, not even close.")); errCode(err) != "invalid_tar" {
		t.Errorf("garbage: %v, want invalid_tar", err)
	}
}

func TestUploadTarRefusesEscapes(t *testing.T) {
	h := startAgent(t, nil)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(h.root, "out-link")); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(filepath.Join(h.root, "dst"), outside)
	tests := map[string]struct {
		entries  []entry
		wantCode string
	}{
		"dot-dot name":                {entries: []entry{regular("../evil", "x")}, wantCode: "path_not_allowed"},
		"nested dot-dot name":         {entries: []entry{regular("a/../../evil", "x")}, wantCode: "path_not_allowed"},
		"absolute name":               {entries: []entry{regular("/tmp/evil", "x")}, wantCode: "path_not_allowed"},
		"symlink out":                 {entries: []entry{symlink("l", rel)}, wantCode: "path_not_allowed"},
		"symlink climbing":            {entries: []entry{symlink("l", "../../../../../../etc")}, wantCode: "path_not_allowed"},
		"absolute symlink":            {entries: []entry{symlink("l", "/etc/passwd")}, wantCode: "path_not_allowed"},
		"symlink loop climbs":         {entries: []entry{symlink("a", "."), symlink("a/a/l", "../x")}, wantCode: "path_not_allowed"},
		"symlink through own symlink": {entries: []entry{dir("d/"), symlink("d/up", ".."), symlink("d/up/l", "..")}, wantCode: "path_not_allowed"},
		"hardlink out":                {entries: []entry{hardlink("h", "../../../../etc/passwd")}, wantCode: "path_not_allowed"},
		"hardlink via symlink out":    {entries: []entry{hardlink("h", "../out-link/x")}, wantCode: "path_not_allowed"},
		"fifo":                        {entries: []entry{{hdr: tar.Header{Name: "f", Typeflag: tar.TypeFifo}}}, wantCode: "invalid_tar"},
		"device":                      {entries: []entry{{hdr: tar.Header{Name: "d", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}, wantCode: "invalid_tar"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, replace := range []bool{false, true} {
				dst := filepath.Join(h.root, "dst")
				_, err := h.client.UploadTar(testwait.Context(t, 10*time.Second), dst, replace, bytes.NewReader(makeTar(t, false, tc.entries...)))
				if got := errCode(err); got != tc.wantCode {
					t.Errorf("replace=%v: %v, want %s", replace, err, tc.wantCode)
				}
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("wrote outside: %v", entries)
			}
			for _, p := range []string{filepath.Join(filepath.Dir(h.root), "evil"), "/tmp/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s exists", p)
				}
			}
		})
	}
}

// A symlink already in the target directory (the workload may have made it)
// cannot be used to write outside.
func TestUploadTarExistingSymlinkOut(t *testing.T) {
	h := startAgent(t, nil)
	outside := t.TempDir()
	dst := filepath.Join(h.root, "dst")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dst, "link")); err != nil {
		t.Fatal(err)
	}
	for _, e := range []entry{regular("link/evil", "x"), dir("link/sub/"), symlink("l2", "link/x"), hardlink("h", "link/x")} {
		_, err := h.client.UploadTar(testwait.Context(t, 10*time.Second), dst, false, bytes.NewReader(makeTar(t, false, e)))
		if errCode(err) != "path_not_allowed" {
			t.Errorf("entry %q: %v, want path_not_allowed", e.hdr.Name, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("wrote outside: %v", entries)
	}
}

// With replace the old tree is swapped out whole; a failed replace leaves
// the old tree as it was, and no staging directory survives either way.
func TestUploadTarReplace(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	dst := filepath.Join(h.root, "work", ".opencode", "skill")
	if _, err := h.client.UploadTar(ctx, dst, false, bytes.NewReader(makeTar(t, false, regular("old.md", "old"), regular("keep/x", "x")))); err != nil {
		t.Fatal(err)
	}
	// Merge without replace.
	if _, err := h.client.UploadTar(ctx, dst, false, bytes.NewReader(makeTar(t, false, regular("more.md", "more")))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"old.md": "old", "keep": "dir", "keep/x": "x", "more.md": "more"}, tree(t, dst)); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
	// A failing replace changes nothing.
	_, err := h.client.UploadTar(ctx, dst, true, bytes.NewReader(makeTar(t, false, regular("new.md", "new"), regular("../bad", "x"))))
	if errCode(err) != "path_not_allowed" {
		t.Fatalf("bad replace: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"old.md": "old", "keep": "dir", "keep/x": "x", "more.md": "more"}, tree(t, dst)); diff != "" {
		t.Errorf("after failed replace (-want +got):\n%s", diff)
	}
	res, err := h.client.UploadTar(ctx, dst, true, bytes.NewReader(makeTar(t, true, regular("new.md", "new"), regular("sub/y", "yy"))))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&agentapi.TarResult{Files: 2, Bytes: 5}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"new.md": "new", "sub": "dir", "sub/y": "yy"}, tree(t, dst)); diff != "" {
		t.Errorf("replaced (-want +got):\n%s", diff)
	}
	siblings, _ := os.ReadDir(filepath.Dir(dst))
	if len(siblings) != 1 || siblings[0].Name() != "skill" {
		t.Errorf("leftovers beside the target: %v", siblings)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("replaced dir mode: %v %v", fi.Mode(), err)
	}
	// Replace into a directory that does not exist yet.
	fresh := filepath.Join(h.root, "fresh", "dir")
	if _, err := h.client.UploadTar(ctx, fresh, true, bytes.NewReader(makeTar(t, false, regular("a", "a")))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "a"}, tree(t, fresh)); diff != "" {
		t.Errorf("fresh (-want +got):\n%s", diff)
	}
	if _, err := h.client.UploadTar(ctx, h.root, true, bytes.NewReader(makeTar(t, false, regular("a", "a")))); errCode(err) != "path_not_allowed" {
		t.Errorf("replace a root: %v, want path_not_allowed", err)
	}
}
