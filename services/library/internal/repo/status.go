package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Status is the state of the library against its remote.
type Status struct {
	Branch string
	Head   string
	Remote bool
	// Ahead and Behind count commits against the remote branch as the
	// last fetch saw it.
	Ahead, Behind int
	PushPending   bool
	LastPushError string
	LastPushErrAt time.Time
	LastPushAt    time.Time
	LastFetchAt   time.Time
}

// Status reports the branch, HEAD, and the push and fetch state.
func (r *Repo) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Branch: r.opts.Branch, Head: r.Head(), Remote: r.HasRemote()}
	r.pushMu.Lock()
	st.PushPending, st.LastPushError, st.LastPushErrAt, st.LastPushAt = r.push.pending, r.push.lastErr, r.push.lastErrAt, r.push.lastOK
	r.pushMu.Unlock()
	if t := r.fetchedAt.Load(); t != nil {
		st.LastFetchAt = *t
	}
	if !st.Remote {
		return st, nil
	}
	local := plumbing.NewHash(st.Head)
	ref, err := r.git.Reference(r.trackingRef(), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		n, err := r.countOnly(local, nil)
		st.Ahead = n
		return st, err
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", r.trackingRef(), err)
	}
	remote := ref.Hash()
	if remote == local {
		return st, nil
	}
	if st.Ahead, err = r.countOnly(local, &remote); err != nil {
		return st, err
	}
	if st.Behind, err = r.countOnly(remote, &local); err != nil {
		return st, err
	}
	return st, nil
}

// countOnly counts the commits reachable from a but not from b.
func (r *Repo) countOnly(a plumbing.Hash, b *plumbing.Hash) (int, error) {
	seen := map[plumbing.Hash]bool{}
	if b != nil {
		if err := r.walk(*b, func(h plumbing.Hash) bool { seen[h] = true; return true }); err != nil {
			return 0, err
		}
	}
	n := 0
	err := r.walk(a, func(h plumbing.Hash) bool {
		if seen[h] {
			return false
		}
		n++
		return true
	})
	return n, err
}

// walk visits every commit reachable from start once; visit returning
// false stops the walk below that commit.
func (r *Repo) walk(start plumbing.Hash, visit func(plumbing.Hash) bool) error {
	done := map[plumbing.Hash]bool{}
	stack := []plumbing.Hash{start}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if done[h] {
			continue
		}
		done[h] = true
		if !visit(h) {
			continue
		}
		c, err := r.git.CommitObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue // a shallow edge
		}
		if err != nil {
			return fmt.Errorf("read commit %s: %w", h, err)
		}
		stack = append(stack, c.ParentHashes...)
	}
	return nil
}

// CommitInfo is one commit in an item's history.
type CommitInfo struct {
	Revision    string
	Message     string
	AuthorName  string
	AuthorEmail string
	Time        time.Time
}

// History lists the newest commits (at most limit) that changed the file
// or folder p.
func (r *Repo) History(ctx context.Context, p string, limit int) ([]CommitInfo, error) {
	var out []CommitInfo
	err := r.private(func(g *git.Repository) error {
		head, err := g.Head()
		if err != nil {
			return err
		}
		start := time.Now()
		iter, err := g.Log(&git.LogOptions{From: head.Hash(), PathFilter: func(s string) bool {
			return s == p || strings.HasPrefix(s, p+"/")
		}})
		if err != nil {
			return err
		}
		defer iter.Close()
		err = iter.ForEach(func(c *object.Commit) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			out = append(out, CommitInfo{Revision: c.Hash.String(), Message: strings.TrimRight(c.Message, "\n"),
				AuthorName: c.Author.Name, AuthorEmail: c.Author.Email, Time: c.Author.When})
			if len(out) >= limit {
				return io.EOF
			}
			return nil
		})
		if errors.Is(err, io.EOF) {
			err = nil
		}
		r.opts.Metrics.observe("log", start, err)
		return err
	})
	return out, err
}

// private runs fn with a go-git handle of its own under the shared lock,
// so that readers of history never contend with each other for go-git's
// unsynchronised caches.
func (r *Repo) private(fn func(g *git.Repository) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g, err := git.PlainOpen(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("open library repository: %w", err)
	}
	return fn(g)
}

var revisionPattern = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// AtRevision runs fn with the repository's tree at rev (a commit hash or
// an unambiguous prefix; empty means HEAD) and the full hash.
func (r *Repo) AtRevision(rev string, fn func(fsys *TreeFS, revision string) error) error {
	if rev != "" && !revisionPattern.MatchString(rev) {
		return fmt.Errorf("%w: %q is not a commit hash", ErrUnknownRevision, rev)
	}
	return r.private(func(g *git.Repository) error {
		var h plumbing.Hash
		if rev == "" {
			head, err := g.Head()
			if err != nil {
				return err
			}
			h = head.Hash()
		} else {
			resolved, err := g.ResolveRevision(plumbing.Revision(rev))
			if err != nil {
				return fmt.Errorf("%w: %s", ErrUnknownRevision, rev)
			}
			h = *resolved
		}
		c, err := g.CommitObject(h)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrUnknownRevision, rev)
		}
		tree, err := c.Tree()
		if err != nil {
			return fmt.Errorf("read tree of %s: %w", h, err)
		}
		return fn(&TreeFS{tree: tree, When: c.Committer.When}, h.String())
	})
}
