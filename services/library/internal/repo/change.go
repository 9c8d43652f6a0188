package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Commit describes the result of a change.
type Commit struct {
	Revision string // HEAD after the change
	// Changed is false when the change left the tree as it was: no commit
	// was made.
	Changed bool
}

// Tx is one change in progress: it reads the work tree and writes files,
// each atomically. The change commits them all at once.
type Tx struct {
	r       *Repo
	root    *os.Root
	touched map[string]bool // slash paths written or removed
}

// FS is the work tree as the change sees it.
func (tx *Tx) FS() fs.FS { return tx.root.FS() }

// WriteFile writes name (a slash path) through a temporary file that is
// synced and renamed into place, so a reader or a crash sees the old file
// or the new one, never a torn one. The temporary file's name starts with
// a dot: never listed, and cleaned at the next start if a crash strands it.
func (tx *Tx) WriteFile(name string, data []byte) error {
	name = path.Clean(name)
	if err := tx.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := path.Join(path.Dir(name), ".tmp-"+hex.EncodeToString(suffix[:]))
	f, err := tx.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = tx.root.Rename(tmp, name)
	}
	if err != nil {
		_ = tx.root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	tx.touched[name] = true
	return nil
}

// RemoveAll removes a file or a folder and everything in it.
func (tx *Tx) RemoveAll(name string) error {
	name = path.Clean(name)
	if err := tx.root.RemoveAll(name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	tx.touched[name] = true
	// Leave no empty parent folders behind (an empty skill/ is noise).
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if tx.root.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// Change runs fn under the writer lock and commits what it wrote as one
// commit by author with message, then pushes when there is a remote. An
// error from fn (or from writing) puts every touched path back as HEAD has
// it and commits nothing. A failed push does not fail the change: the
// commit stays, the push is retried in the background and the status says
// so.
func (r *Repo) Change(ctx context.Context, author Signature, message string, fn func(tx *Tx) error) (Commit, error) {
	return r.ChangeMessage(ctx, author, func(tx *Tx) (string, error) { return message, fn(tx) })
}

// ChangeMessage is Change with the commit message returned by fn, for
// messages that depend on what the change finds ("Add" or "Update").
func (r *Repo) ChangeMessage(ctx context.Context, author Signature, fn func(tx *Tx) (string, error)) (Commit, error) {
	start := time.Now()
	r.mu.Lock()
	c, err := r.change(author, fn)
	r.mu.Unlock()
	r.opts.Metrics.observe("commit", start, err)
	if err != nil || !c.Changed {
		return c, err
	}
	r.opts.OnHead(c.Revision)
	if r.HasRemote() {
		// While a push is failing, its retrier owns the remote: a save
		// must not wait for a dead remote's timeout once more.
		if r.pushFailing() || !r.pushShared(ctx) {
			r.markPending()
		}
	}
	return c, nil
}

func (r *Repo) change(author Signature, fn func(tx *Tx) (string, error)) (Commit, error) {
	tx := &Tx{r: r, root: r.root, touched: map[string]bool{}}
	message, err := fn(tx)
	if err != nil {
		if rerr := r.restore(tx); rerr != nil {
			return Commit{}, errors.Join(err, rerr)
		}
		return Commit{}, err
	}
	c, err := r.commit(tx, author, message, false)
	if err != nil {
		if rerr := r.restore(tx); rerr != nil {
			return Commit{}, errors.Join(err, rerr)
		}
		return Commit{}, err
	}
	return c, nil
}

// commit stages exactly the touched paths and commits them. Staging by
// hand (rather than go-git's Add, which computes a whole-tree status for
// paths that no longer exist) keeps a save's cost independent of the
// library's size.
func (r *Repo) commit(tx *Tx, author Signature, message string, initial bool) (Commit, error) {
	idx, err := r.git.Storer.Index()
	if err != nil {
		return Commit{}, fmt.Errorf("read index: %w", err)
	}
	for name := range tx.touched {
		// Drop the path and anything below it, then add what is there now.
		kept := idx.Entries[:0]
		for _, e := range idx.Entries {
			if e.Name != name && !strings.HasPrefix(e.Name, name+"/") {
				kept = append(kept, e)
			}
		}
		idx.Entries = kept
		if err := r.stage(tx.root, idx, name); err != nil {
			return Commit{}, err
		}
	}
	if err := r.git.Storer.SetIndex(idx); err != nil {
		return Commit{}, fmt.Errorf("write index: %w", err)
	}
	var oldTree *object.Tree
	if head, err := r.git.Head(); err == nil {
		if c, err := r.git.CommitObject(head.Hash()); err == nil {
			oldTree, _ = c.Tree()
		}
	}
	tree, err := r.writeTrees(indexTree(idx), ".", oldTree, tx.touched)
	if err != nil {
		return Commit{}, err
	}
	h, changed, err := r.commitTree(tree, r.signature(author), r.signature(r.opts.Committer), message, initial)
	if err != nil {
		return Commit{}, fmt.Errorf("commit: %w", err)
	}
	if !changed {
		return Commit{Revision: r.Head(), Changed: false}, nil
	}
	rev := h.String()
	r.head.Store(&rev)
	return Commit{Revision: rev, Changed: true}, nil
}

// stage adds the file at name, or every file below the folder at name, to
// the index. A path that no longer exists adds nothing.
func (r *Repo) stage(root *os.Root, idx *index.Index, name string) error {
	return fs.WalkDir(root.FS(), name, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == name {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(path.Base(p), ".tmp-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return fmt.Errorf("stage %s: %w", p, err)
		}
		h, err := r.storeBlob(data)
		if err != nil {
			return fmt.Errorf("stage %s: %w", p, err)
		}
		mode := filemode.Regular
		if info.Mode()&0o111 != 0 {
			mode = filemode.Executable
		}
		e, err := idx.Entry(p)
		if err != nil {
			e = idx.Add(p)
		}
		e.Hash, e.Mode, e.Size, e.ModifiedAt = h, mode, uint32(len(data)), info.ModTime()
		return nil
	})
}

func (r *Repo) storeBlob(data []byte) (plumbing.Hash, error) {
	obj := r.git.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.git.Storer.SetEncodedObject(obj)
}

// restore puts every touched path back as HEAD has it (an aborted change).
func (r *Repo) restore(tx *Tx) error {
	if len(tx.touched) == 0 {
		return nil
	}
	head, err := r.git.Head()
	if err != nil {
		return err
	}
	commit, err := r.git.CommitObject(head.Hash())
	if err != nil {
		return err
	}
	tree, err := commit.Tree()
	if err != nil {
		return err
	}
	var errs []error
	for name := range tx.touched {
		if err := r.root.RemoveAll(name); err != nil {
			errs = append(errs, err)
			continue
		}
		sub, err := tree.Tree(name)
		if err == nil {
			errs = append(errs, sub.Files().ForEach(func(f *object.File) error {
				return restoreFile(r.root, path.Join(name, f.Name), f)
			}))
			continue
		}
		if f, err := tree.File(name); err == nil {
			errs = append(errs, restoreFile(r.root, name, f))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore work tree after a failed change: %w", err)
	}
	return nil
}

func restoreFile(root *os.Root, name string, f *object.File) error {
	rd, err := f.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if f.Mode == filemode.Executable {
		mode = 0o755
	}
	return root.WriteFile(name, data, mode)
}
