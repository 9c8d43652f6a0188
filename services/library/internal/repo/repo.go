// Package repo is the library's git repository, handled with go-git: a
// clone of a remote (or a local repository seeded with starter content) on
// a volume, one writer at a time, one commit per change, pushes retried in
// the background, and fetch/fast-forward, force-sync and force-push.
//
// The work tree is the read model: readers take a shared lock and read
// plain files through an os.Root, so a symlink in a remote's content can
// never lead outside the repository. go-git's storage is not safe for
// concurrent use, so the shared handle is used only under the exclusive
// lock; history and bundles read through private handles under the shared
// lock, and pushes through a private handle of their own.
package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Errors callers map to answers.
var (
	ErrNoRemote        = errors.New("the library has no remote")
	ErrDiverged        = errors.New("the local and remote histories have diverged")
	ErrStaleLease      = errors.New("the remote branch moved since it was last fetched")
	ErrUnknownRevision = errors.New("no such revision")
)

// Signature names a commit's author or committer.
type Signature struct {
	Name  string
	Email string
}

// Options configure Open.
type Options struct {
	Dir    string // the work tree; created when missing
	Remote string // URL or path of the remote; empty for a local-only library
	Branch string // ["main"]
	Auth   transport.AuthMethod
	// Seed is the starter content committed when Open creates a repository
	// (no remote, or an empty one).
	Seed      fs.FS
	Committer Signature // who commits on the users' behalf
	Log       *slog.Logger
	Metrics   *Metrics
	// RemoteTimeout bounds one fetch or push [30s].
	RemoteTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between retries of a
	// failed push [1s, 5m].
	RetryMin, RetryMax time.Duration
	// OnHead is called (without locks held) with the new HEAD after every
	// change of it, and once at Open.
	OnHead func(revision string)
	Now    func() time.Time
}

func (o *Options) defaults() {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RemoteTimeout == 0 {
		o.RemoteTimeout = 30 * time.Second
	}
	if o.RetryMin == 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.Committer.Name == "" {
		o.Committer = Signature{Name: "Sortie Library", Email: "library@sortie.local"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnHead == nil {
		o.OnHead = func(string) {}
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

// Repo is an open library repository.
type Repo struct {
	opts Options
	log  *slog.Logger

	// mu: the exclusive lock for writers and every use of git and wt; the
	// shared lock for reading the work tree through root.
	mu   sync.RWMutex
	git  *git.Repository
	wt   *git.Worktree
	root *os.Root

	head atomic.Pointer[string]

	pushing   sync.Mutex // one push at a time
	pushMu    sync.Mutex // guards push
	push      pushState
	kick      chan struct{}
	fetchedAt atomic.Pointer[time.Time]
}

type pushState struct {
	pending   bool
	lastErr   string
	lastErrAt time.Time
	lastOK    time.Time
	attempts  int
}

func (r *Repo) branchRef() plumbing.ReferenceName {
	return plumbing.NewBranchReferenceName(r.opts.Branch)
}

func (r *Repo) trackingRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(git.DefaultRemoteName, r.opts.Branch)
}

// Open opens the repository in opts.Dir, cloning or creating it first if
// needed, and puts the work tree back to HEAD: whatever a crash left
// behind (a half-applied change, temporary files) is discarded.
func Open(ctx context.Context, opts Options) (*Repo, error) {
	opts.defaults()
	r := &Repo{opts: opts, log: opts.Log, kick: make(chan struct{}, 1)}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(opts.Dir)), 0o755); err != nil {
		return nil, fmt.Errorf("library data folder: %w", err)
	}
	var err error
	_, statErr := os.Stat(filepath.Join(opts.Dir, ".git"))
	switch {
	case statErr == nil:
		err = r.openExisting(ctx)
	case !errors.Is(statErr, fs.ErrNotExist):
		return nil, fmt.Errorf("library repository: %w", statErr)
	case opts.Remote != "":
		err = r.clone(ctx)
	default:
		err = r.create()
	}
	if err != nil {
		return nil, err
	}
	if r.root, err = os.OpenRoot(opts.Dir); err != nil {
		return nil, fmt.Errorf("open work tree: %w", err)
	}
	if err := r.refreshHead(); err != nil {
		return nil, err
	}
	r.log.Info("library repository open", "dir", opts.Dir, "branch", opts.Branch, "head", r.Head(), "remote", opts.Remote != "")
	opts.OnHead(r.Head())
	return r, nil
}

// Close releases the work tree handle.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.root.Close()
}

func (r *Repo) openExisting(ctx context.Context) error {
	g, err := git.PlainOpen(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("open library repository: %w", err)
	}
	r.git = g
	if r.wt, err = g.Worktree(); err != nil {
		return fmt.Errorf("library work tree: %w", err)
	}
	if err := r.configureRemote(); err != nil {
		return err
	}
	if err := r.checkoutBranch(ctx); err != nil {
		return err
	}
	return r.cleanWorkTree()
}

// configureRemote points origin at the configured remote (which may have
// changed since the clone), or removes it when none is configured.
func (r *Repo) configureRemote() error {
	cfg, err := r.git.Config()
	if err != nil {
		return fmt.Errorf("read git config: %w", err)
	}
	cur, ok := cfg.Remotes[git.DefaultRemoteName]
	switch {
	case r.opts.Remote == "" && !ok:
		return nil
	case r.opts.Remote == "":
		delete(cfg.Remotes, git.DefaultRemoteName)
	case ok && len(cur.URLs) == 1 && cur.URLs[0] == r.opts.Remote:
		return nil
	default:
		cfg.Remotes[git.DefaultRemoteName] = &gitconfig.RemoteConfig{
			Name:  git.DefaultRemoteName,
			URLs:  []string{r.opts.Remote},
			Fetch: []gitconfig.RefSpec{gitconfig.RefSpec(fmt.Sprintf("+refs/heads/*:refs/remotes/%s/*", git.DefaultRemoteName))},
		}
		r.log.Info("library remote changed", "remote", r.opts.Remote)
	}
	if err := r.git.SetConfig(cfg); err != nil {
		return fmt.Errorf("write git config: %w", err)
	}
	return nil
}

// checkoutBranch makes HEAD the configured branch. A branch that does not
// exist locally starts from the remote's, else from the current HEAD.
func (r *Repo) checkoutBranch(ctx context.Context) error {
	head, err := r.git.Reference(plumbing.HEAD, false)
	if err != nil {
		return fmt.Errorf("read HEAD: %w", err)
	}
	if head.Type() == plumbing.SymbolicReference && head.Target() == r.branchRef() {
		return nil
	}
	if _, err := r.git.Reference(r.branchRef(), false); errors.Is(err, plumbing.ErrReferenceNotFound) {
		start, err := r.git.ResolveRevision(plumbing.Revision(r.trackingRef()))
		if err != nil {
			if start, err = r.git.ResolveRevision(plumbing.Revision(plumbing.HEAD)); err != nil {
				return fmt.Errorf("start branch %s: %w", r.opts.Branch, err)
			}
		}
		if err := r.git.Storer.SetReference(plumbing.NewHashReference(r.branchRef(), *start)); err != nil {
			return fmt.Errorf("create branch %s: %w", r.opts.Branch, err)
		}
	}
	if err := r.git.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, r.branchRef())); err != nil {
		return fmt.Errorf("switch to branch %s: %w", r.opts.Branch, err)
	}
	r.log.Info("library switched branch", "branch", r.opts.Branch)
	return nil
}

// cleanWorkTree resets the index and files to HEAD and removes untracked
// files: the work tree only ever differs from HEAD inside a change, so
// anything found here at start is debris of a crash.
func (r *Repo) cleanWorkTree() error {
	head, err := r.git.Head()
	if err != nil {
		return fmt.Errorf("read HEAD: %w", err)
	}
	if err := r.wt.Reset(&git.ResetOptions{Commit: head.Hash(), Mode: git.HardReset}); err != nil {
		return fmt.Errorf("reset work tree: %w", err)
	}
	if err := r.wt.Clean(&git.CleanOptions{Dir: true}); err != nil {
		return fmt.Errorf("clean work tree: %w", err)
	}
	return nil
}

// clone clones the remote's branch into Dir. It clones into a sibling
// folder and renames it into place, so a crash never leaves a half clone
// that the next start would take for a repository. An empty remote gets
// a new seeded repository that the first push publishes.
func (r *Repo) clone(ctx context.Context) error {
	tmp := r.opts.Dir + ".clone"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove old partial clone: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*r.opts.RemoteTimeout)
	defer cancel()
	start := time.Now()
	_, err := git.PlainCloneContext(ctx, tmp, false, &git.CloneOptions{
		URL: r.opts.Remote, Auth: r.opts.Auth, ReferenceName: r.branchRef(), SingleBranch: true,
	})
	r.opts.Metrics.observe("clone", start, err)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) || isMissingRef(err) {
		_ = os.RemoveAll(tmp)
		r.log.Info("the library remote has no branch yet; starting one from the starter content", "branch", r.opts.Branch)
		if err := r.create(); err != nil {
			return err
		}
		r.markPending()
		return nil
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("clone library remote: %w", err)
	}
	if err := os.Rename(tmp, r.opts.Dir); err != nil {
		return fmt.Errorf("move clone into place: %w", err)
	}
	return r.openExisting(ctx)
}

func isMissingRef(err error) bool {
	var noMatch git.NoMatchingRefSpecError
	return errors.Is(err, plumbing.ErrReferenceNotFound) || errors.As(err, &noMatch)
}

// create initialises a repository on the branch and commits the seed.
func (r *Repo) create() error {
	g, err := git.PlainInitWithOptions(r.opts.Dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: r.branchRef()},
	})
	if err != nil {
		return fmt.Errorf("create library repository: %w", err)
	}
	r.git = g
	if r.wt, err = g.Worktree(); err != nil {
		return fmt.Errorf("library work tree: %w", err)
	}
	if err := r.configureRemote(); err != nil {
		return err
	}
	root, err := os.OpenRoot(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("open work tree: %w", err)
	}
	defer root.Close()
	tx := &Tx{r: r, root: root, touched: map[string]bool{}}
	if r.opts.Seed != nil {
		err := fs.WalkDir(r.opts.Seed, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(r.opts.Seed, p)
			if err != nil {
				return err
			}
			return tx.WriteFile(p, data)
		})
		if err != nil {
			return fmt.Errorf("write starter content: %w", err)
		}
	}
	if _, err := r.commit(tx, r.opts.Committer, "Start the library", true); err != nil {
		return fmt.Errorf("commit starter content: %w", err)
	}
	r.log.Info("created a new library repository", "dir", r.opts.Dir, "seeded", r.opts.Seed != nil)
	return nil
}

// Head is the current revision (commit hash).
func (r *Repo) Head() string {
	if h := r.head.Load(); h != nil {
		return *h
	}
	return ""
}

// Branch is the branch the library works on.
func (r *Repo) Branch() string { return r.opts.Branch }

// HasRemote reports whether a remote is configured.
func (r *Repo) HasRemote() bool { return r.opts.Remote != "" }

func (r *Repo) refreshHead() error {
	head, err := r.git.Head()
	if err != nil {
		return fmt.Errorf("read HEAD: %w", err)
	}
	h := head.Hash().String()
	r.head.Store(&h)
	return nil
}

// Read runs fn with the work tree as it is at HEAD; no change runs
// meanwhile.
func (r *Repo) Read(fn func(fsys fs.FS) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return fn(r.root.FS())
}

// Check is a readiness check: the repository answers and HEAD resolves.
func (r *Repo) Check(context.Context) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, err := r.root.Stat(".git"); err != nil {
		return fmt.Errorf("library repository: %w", err)
	}
	return nil
}

// commitSignature is a go-git signature stamped now.
func (r *Repo) signature(s Signature) *object.Signature {
	return &object.Signature{Name: s.Name, Email: s.Email, When: r.opts.Now()}
}
