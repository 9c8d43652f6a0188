package files

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sandbox is a root for the fuzzed archives next to a folder that must
// never change: a secret file, and a symlink to it inside the root, as a
// workload could have left there.
type sandbox struct {
	dir, root, outside string
	before             map[string]string
	planted            map[string]bool // the symlinks that lead out on purpose
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	dir := t.TempDir()
	s := &sandbox{dir: dir, root: filepath.Join(dir, "root"), outside: filepath.Join(dir, "outside"), planted: map[string]bool{}}
	for _, d := range []string{s.root, s.outside, filepath.Join(s.root, "dst")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "secret"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"dst/out": "../../outside", "dst/abs": s.outside, "dst/secret": "../../outside/secret"} {
		if err := os.Symlink(target, filepath.Join(s.root, link)); err != nil {
			t.Fatal(err)
		}
		s.planted[filepath.Join(s.root, link)] = true
	}
	s.before = snapshot(t, dir, s.root)
	return s
}

// snapshot lists everything under dir but below skip as path -> content.
func snapshot(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[p] = "-> " + l
		case fi.IsDir():
			out[p] = "dir " + fi.Mode().String()
		default:
			b, _ := os.ReadFile(p)
			out[p] = fi.Mode().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// check fails the test if anything outside the root changed, or if a
// symlink under the root now leads out of it.
func (s *sandbox) check(t *testing.T) {
	t.Helper()
	after := snapshot(t, s.dir, s.root)
	for p, v := range s.before {
		if after[p] != v {
			t.Fatalf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := s.before[p]; !ok {
			t.Fatalf("%s appeared outside the root", p)
		}
	}
	realRoot, _ := filepath.EvalSymlinks(s.root)
	_ = filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 || s.planted[p] {
			return nil
		}
		target, _ := os.Readlink(p)
		if filepath.IsAbs(target) {
			t.Fatalf("the archive made an absolute symlink %s -> %s", p, target)
		}
		if real, err := filepath.EvalSymlinks(p); err == nil && !within(real, realRoot) {
			t.Fatalf("symlink %s leads out to %s", p, real)
		}
		return nil
	})
}

// archiveOf builds a tar from a spec of one entry a line: a kind (f file,
// d dir, l symlink, h hardlink, p fifo), a name, and the content or link.
func archiveOf(spec string, gz bool) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	var tw *tar.Writer
	if gz {
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for line := range strings.SplitSeq(spec, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		name, arg, _ := strings.Cut(rest, " ")
		h := &tar.Header{Name: name, Mode: 0o644}
		switch kind {
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(arg))
		case "d":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, arg
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, arg
		case "p":
			h.Typeflag = tar.TypeFifo
		default:
			continue
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if kind == "f" {
			_, _ = tw.Write([]byte(arg))
		}
	}
	_ = tw.Close()
	if gz {
		_ = zw.Close()
	}
	return buf.Bytes()
}

// FuzzUntar: no archive (built from a spec, or raw bytes) writes outside
// the directory it is unpacked into, through a name, a symlink or a
// hardlink, its own or one already there; and none leaves a symlink that
// leads out.
func FuzzUntar(f *testing.F) {
	for _, spec := range []string{
		"d skill/\nf skill/SKILL.md # skill\nl skill/latest SKILL.md\nh skill/copy skill/SKILL.md",
		"f ../evil x", "f a/../../evil x", "f /tmp/evil x", "l l ../../outside", "l l /etc/passwd",
		"l a .\nl a/a/l ../x", "d d/\nl d/up ..\nl d/up/l ..", "h h ../../outside/secret", "h h out/secret",
		"f out/evil x", "d out/sub/", "l l2 out/x", "f secret overwritten", "h h secret", "f abs/evil x",
		"l x ../dst\nf x/y z", "l x ..\nf x/evil z", "l a b\nl b a\nf a/c x", "p fifo", "f  x", "f . x", "d ./",
		"f a x\nf a/b y", "d a/\nf a x", "l dst/../../x y",
	} {
		f.Add(spec, []byte(nil), false, false)
		f.Add(spec, []byte(nil), true, true)
	}
	f.Add("", []byte("not a tar"), false, false)
	f.Add("", []byte{0x1f, 0x8b, 0, 0}, false, false)
	f.Fuzz(func(t *testing.T, spec string, raw []byte, gz, replace bool) {
		s := newSandbox(t)
		archive := raw
		if len(raw) == 0 {
			archive = archiveOf(spec, gz)
		}
		r, err := NewRoots([]string{s.root})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = r.Untar(filepath.Join(s.root, "dst"), replace, bytes.NewReader(archive), TarLimits{MaxBytes: 1 << 20, MaxEntries: 100})
		s.check(t)
	})
}

// FuzzPutPath: a file written through any path lands inside a root, or is
// refused; nothing outside changes.
func FuzzPutPath(f *testing.F) {
	for _, p := range []string{"dst/a", "dst/out/evil", "dst/abs/evil", "dst/secret", "../outside/x", "dst/../../outside/x",
		"dst/./a", "", "dst//b", "dst/out", "dst/\x00x", "dst/" + strings.Repeat("a", 300), "dst/a/../b"} {
		f.Add(p, true)
	}
	f.Fuzz(func(t *testing.T, rel string, relative bool) {
		s := newSandbox(t)
		r, err := NewRoots([]string{s.root})
		if err != nil {
			t.Fatal(err)
		}
		p := rel
		if relative {
			p = s.root + "/" + rel
		}
		_, _ = r.Put(p, 0o644, strings.NewReader("x"))
		_ = r.Delete(p, true)
		s.check(t)
	})
}
