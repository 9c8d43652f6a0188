package files

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrBadTar is returned for a corrupt archive or an entry of a kind the agent
// does not unpack (devices, fifos). Entries that would land outside the
// target directory are ErrNotAllowed.
var ErrBadTar = errors.New("invalid tar archive")

// TarLimits bound what one archive may unpack to, since a small gzip can
// expand enormously.
type TarLimits struct {
	MaxBytes   int64 // total bytes of regular files
	MaxEntries int
}

// DefaultTarLimits are generous for skills and tools.
var DefaultTarLimits = TarLimits{MaxBytes: 4 << 30, MaxEntries: 200_000}

// TarStats counts what was unpacked.
type TarStats struct {
	Files int
	Bytes int64
}

// Untar unpacks a tar (gzip-compressed or not, detected from its first
// bytes) into dir, creating it if needed. With replace, the archive is
// unpacked next to dir and then swapped in for it in one rename, so a reader
// sees either the old tree or the new one; the old tree is then removed.
// Without replace, entries are added over dir's content and a failure may
// leave part of the archive unpacked.
func (r *Roots) Untar(dir string, replace bool, archive io.Reader, lim TarLimits) (TarStats, error) {
	t, err := r.resolve(dir)
	if err != nil {
		return TarStats{}, err
	}
	if replace && t.isRoot() {
		return TarStats{}, fmt.Errorf("%w: cannot replace the root %s", ErrNotAllowed, t.path)
	}
	if fi, err := os.Lstat(t.path); err == nil && !fi.IsDir() {
		return TarStats{}, fmt.Errorf("%w: %s exists and is not a directory", ErrNotAllowed, t.path)
	}
	tr, err := tarReader(archive)
	if err != nil {
		return TarStats{}, err
	}
	if !replace {
		if err := os.MkdirAll(t.path, 0o755); err != nil {
			return TarStats{}, fmt.Errorf("create directory: %w", err)
		}
		return extract(tr, t.path, lim)
	}

	parent := filepath.Dir(t.path)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return TarStats{}, fmt.Errorf("create parent: %w", err)
	}
	// Same parent, so the swap is a rename within one filesystem.
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(t.path)+".sortie-new-")
	if err != nil {
		return TarStats{}, fmt.Errorf("create staging directory: %w", err)
	}
	st, err := extract(tr, tmp, lim)
	if err == nil {
		err = os.Chmod(tmp, 0o755) // MkdirTemp made it 0700
	}
	if err == nil {
		err = swap(tmp, t.path)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return TarStats{}, err
	}
	return st, nil
}

// swap puts the directory staged at tmp in place of dst; what was at dst is
// removed afterwards.
func swap(tmp, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		// tmp now holds the old tree.
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("remove old tree: %w", err)
		}
		return nil
	case errors.Is(err, syscall.ENOENT):
		// Nothing to replace.
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("move into place: %w", err)
		}
		return nil
	case errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP):
		// A filesystem without RENAME_EXCHANGE: two renames, with a moment
		// in which dst is missing but never half-written.
		old := tmp + ".old"
		if err := os.Rename(dst, old); err != nil {
			return fmt.Errorf("move old tree aside: %w", err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			_ = os.Rename(old, dst)
			return fmt.Errorf("move into place: %w", err)
		}
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove old tree: %w", err)
		}
		return nil
	}
	return fmt.Errorf("swap directories: %w", err)
}

func tarReader(r io.Reader) (*tar.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrBadTar, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrBadTar, err)
		}
		return tar.NewReader(zr), nil
	}
	return tar.NewReader(br), nil
}

// extract unpacks every entry of tr under base, an existing directory.
func extract(tr *tar.Reader, base string, lim TarLimits) (TarStats, error) {
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return TarStats{}, fmt.Errorf("resolve %s: %w", base, err)
	}
	x := extractor{base: base, realBase: realBase, lim: lim}
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return x.st, nil
		}
		if err != nil {
			return x.st, fmt.Errorf("%w: %w", ErrBadTar, err)
		}
		if entries >= lim.MaxEntries {
			return x.st, fmt.Errorf("%w: more than %d entries", ErrBadTar, lim.MaxEntries)
		}
		if err := x.entry(hdr, tr); err != nil {
			return x.st, err
		}
	}
}

type extractor struct {
	base, realBase string
	lim            TarLimits
	st             TarStats
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	rel, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil // the archive's own top directory
	}
	dst := filepath.Join(x.base, rel)
	parent := filepath.Dir(dst)
	realParent, err := containedAncestor(parent, x.base, x.realBase)
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("entry %q: create parent: %w", hdr.Name, err)
	}
	perm := fs.FileMode(hdr.Mode) & fs.ModePerm

	switch hdr.Typeflag {
	case tar.TypeDir:
		// Owner rwx, or the entries inside could not be written.
		if err := os.Mkdir(dst, perm|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if fi, err := os.Lstat(dst); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: entry %q: a non-directory is in the way", ErrBadTar, hdr.Name)
		}
		return nil
	case tar.TypeReg:
		if err := clearWay(dst); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		return x.file(dst, perm, body, hdr.Name)
	case tar.TypeSymlink:
		target, err := symlinkTarget(hdr.Linkname, realParent, x.realBase)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if err := clearWay(dst); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		return nil
	case tar.TypeLink:
		return x.hardlink(hdr, dst)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("%w: entry %q has unsupported type %q", ErrBadTar, hdr.Name, hdr.Typeflag)
}

func (x *extractor) file(dst string, perm fs.FileMode, body io.Reader, name string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	room := x.lim.MaxBytes - x.st.Bytes
	n, err := io.Copy(f, io.LimitReader(body, room+1))
	x.st.Bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: entry %q: %w", ErrBadTar, name, err)
	}
	if n > room {
		return fmt.Errorf("%w: more than %d bytes unpacked", ErrBadTar, x.lim.MaxBytes)
	}
	// OpenFile's perm went through the umask.
	if err := os.Chmod(dst, perm); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	x.st.Files++
	return nil
}

func (x *extractor) hardlink(hdr *tar.Header, dst string) error {
	rel, err := entryPath(hdr.Linkname)
	if err != nil || rel == "." {
		return fmt.Errorf("%w: entry %q links to %q", ErrNotAllowed, hdr.Name, hdr.Linkname)
	}
	src := filepath.Join(x.base, rel)
	real, err := containedAncestor(src, x.base, x.realBase)
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if fi, err := os.Lstat(real); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: entry %q links to %q, which is not a file unpacked before it", ErrBadTar, hdr.Name, hdr.Linkname)
	}
	if err := clearWay(dst); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if err := os.Link(real, dst); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	x.st.Files++
	return nil
}

// entryPath validates an archive member name and returns it cleaned and
// relative.
func entryPath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry name %q", ErrNotAllowed, name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: entry name %q has a .. segment", ErrNotAllowed, name)
		}
	}
	return path.Clean(name), nil
}

// symlinkTarget accepts a relative link target that, from the link's real
// parent directory, stays inside realBase, and returns it cleaned. The link
// is created with the cleaned form on purpose: the kernel does not clean, so
// "a/../x" with a symlink a -> . would climb one level more than it seems.
// Cleaned, ".." appears only at the front, so the target climbs real
// directories from a resolved parent and then only descends, through entries
// that were checked the same way when they were unpacked.
func symlinkTarget(target, realParent, realBase string) (string, error) {
	if target == "" || filepath.IsAbs(target) {
		return "", fmt.Errorf("%w: symlink target %q must be relative", ErrNotAllowed, target)
	}
	clean := filepath.Clean(target)
	dest := filepath.Join(realParent, clean)
	if !within(dest, realBase) {
		return "", fmt.Errorf("%w: symlink target %q points outside the directory", ErrNotAllowed, target)
	}
	// What already exists on the way must not lead out either (a symlink
	// left in the directory by an earlier sync or by the workload).
	if _, err := containedAncestor(dest, realBase, realBase); err != nil {
		return "", err
	}
	return clean, nil
}

// clearWay removes a non-directory at dst so that a new entry can take its
// place without writing through an old symlink.
func clearWay(dst string) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: a directory is in the way", ErrBadTar)
	}
	return os.Remove(dst)
}
