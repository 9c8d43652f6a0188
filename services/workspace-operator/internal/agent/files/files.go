// Package files reads and writes files for the agent's clients, confined to a
// set of allowed roots, and unpacks tar archives into them.
//
// A path is accepted when it is absolute, has no ".." segment, lies under a
// root, and its deepest existing ancestor still lies under that root once
// symlinks are resolved, so a symlink inside a root cannot be used to reach
// outside it. The checks and the operation are not one atomic step; the
// agent's only client is the operator, and the workload itself can write
// anywhere in its container anyway, so the checks guard against mistakes and
// hostile archive or path contents rather than a racing local attacker.
package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Errors the HTTP layer maps to statuses. Missing files are fs.ErrNotExist.
var (
	ErrNotAllowed = errors.New("path not allowed")
	ErrIsDir      = errors.New("is a directory")
	ErrNotEmpty   = errors.New("directory not empty")
	ErrBadMode    = errors.New("invalid mode")
)

// Roots is the set of directories the file API may touch.
type Roots struct {
	roots []string
}

// NewRoots returns the roots; each must be absolute. Roots are resolved
// through symlinks on every use, so a root may be created or mounted after
// the agent starts.
func NewRoots(paths []string) (*Roots, error) {
	r := &Roots{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("root %q is not absolute", p)
		}
		r.roots = append(r.roots, filepath.Clean(p))
	}
	if len(r.roots) == 0 {
		return nil, errors.New("no roots")
	}
	return r, nil
}

// target is an accepted path.
type target struct {
	path     string // cleaned, as given
	root     string // the root it is under, as configured
	realRoot string // the root with symlinks resolved
	real     string // the deepest existing ancestor of path, resolved
}

// isRoot reports whether the path names its root itself.
func (t target) isRoot() bool { return t.path == t.root }

// resolve checks p and returns it cleaned together with its root.
func (r *Roots) resolve(p string) (target, error) {
	if !filepath.IsAbs(p) {
		return target{}, fmt.Errorf("%w: %q is not absolute", ErrNotAllowed, p)
	}
	if hasDotDot(p) {
		return target{}, fmt.Errorf("%w: %q has a .. segment", ErrNotAllowed, p)
	}
	clean := filepath.Clean(p)
	root := ""
	for _, rt := range r.roots {
		if within(clean, rt) && len(rt) > len(root) {
			root = rt
		}
	}
	if root == "" {
		return target{}, fmt.Errorf("%w: %q is outside the allowed roots", ErrNotAllowed, p)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return target{}, fmt.Errorf("%w: root %q: %w", ErrNotAllowed, root, err)
	}
	real, err := containedAncestor(clean, root, realRoot)
	if err != nil {
		return target{}, err
	}
	return target{path: clean, root: root, realRoot: realRoot, real: real}, nil
}

// containedAncestor resolves the deepest existing ancestor of p (p itself
// when it exists; p lies lexically under base) and checks that it is under
// realBase, base's resolved form.
func containedAncestor(p, base, realBase string) (string, error) {
	a := p
	for {
		real, err := filepath.EvalSymlinks(a)
		if err == nil {
			if !within(real, realBase) {
				return "", fmt.Errorf("%w: %q resolves outside %q", ErrNotAllowed, p, base)
			}
			return real, nil
		}
		// ENOTDIR: a file where a directory would be; nothing below exists.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("resolve %q: %w", a, err)
		}
		if a == base || a == "/" {
			return "", fmt.Errorf("%w: %q does not exist", ErrNotAllowed, base)
		}
		a = filepath.Dir(a)
	}
}

// within reports whether p is dir or lies under it; both are clean.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// ParseMode reads an octal permission like "0644" or "755"; empty means 0644.
func ParseMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%w: %q (want octal permission bits such as 0644)", ErrBadMode, s)
	}
	return fs.FileMode(m), nil
}

// Put writes body to path atomically (a temp file in the same directory,
// then a rename), creating parent directories, and returns the bytes written.
func (r *Roots) Put(path string, mode fs.FileMode, body io.Reader) (int64, error) {
	t, err := r.resolve(path)
	if err != nil {
		return 0, err
	}
	if fi, err := os.Lstat(t.path); err == nil && fi.IsDir() {
		return 0, fmt.Errorf("%w: %s", ErrIsDir, t.path)
	}
	dir := filepath.Dir(t.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create parent: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".sortie-put-*")
	if err != nil {
		return 0, fmt.Errorf("create temp file: %w", err)
	}
	n, err := writeAndClose(tmp, mode, body)
	if err != nil {
		os.Remove(tmp.Name())
		return n, err
	}
	if err := os.Rename(tmp.Name(), t.path); err != nil {
		os.Remove(tmp.Name())
		return n, fmt.Errorf("rename into place: %w", err)
	}
	return n, nil
}

func writeAndClose(f *os.File, mode fs.FileMode, body io.Reader) (int64, error) {
	n, err := io.Copy(f, body)
	if err != nil {
		f.Close()
		return n, fmt.Errorf("write file: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return n, fmt.Errorf("chmod: %w", err)
	}
	// Synced before the rename, so that after a crash the name points at
	// the whole new content or at the old file.
	if err := f.Sync(); err != nil {
		f.Close()
		return n, fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("close: %w", err)
	}
	return n, nil
}

// Open opens a regular file for reading; the caller closes it.
func (r *Roots) Open(path string) (*os.File, fs.FileInfo, error) {
	t, err := r.resolve(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat: %w", err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s", ErrIsDir, t.path)
	}
	return f, fi, nil
}

// Delete removes a file or an empty directory, or with recursive a whole
// tree. A root itself cannot be deleted.
func (r *Roots) Delete(path string, recursive bool) error {
	t, err := r.resolve(path)
	if err != nil {
		return err
	}
	if t.isRoot() {
		return fmt.Errorf("%w: %s is a root", ErrNotAllowed, t.path)
	}
	fi, err := os.Lstat(t.path)
	if err != nil {
		return err
	}
	if fi.IsDir() && recursive {
		if err := os.RemoveAll(t.path); err != nil {
			return fmt.Errorf("remove tree: %w", err)
		}
		return nil
	}
	if err := os.Remove(t.path); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("%w: %s (use recursive)", ErrNotEmpty, t.path)
		}
		return fmt.Errorf("remove: %w", err)
	}
	return nil
}
