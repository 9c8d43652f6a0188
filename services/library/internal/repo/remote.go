package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// SyncResult says what a sync did.
type SyncResult struct {
	// Action is "up_to_date", "fast_forward", "pushed" (local commits
	// published) or "reset" (force-sync).
	Action   string
	Revision string // HEAD afterwards
	Previous string // HEAD before
}

// Run retries pending pushes with exponential backoff until ctx ends.
func (r *Repo) Run(ctx context.Context) {
	if !r.HasRemote() {
		<-ctx.Done()
		return
	}
	delay := r.opts.RetryMin
	var next time.Time // no retry before this
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
		}
		if !r.pushPending() {
			delay, next = r.opts.RetryMin, time.Time{}
			continue
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			continue
		}
		if r.retryPush(ctx) {
			delay, next = r.opts.RetryMin, time.Time{}
			continue
		}
		r.log.Warn("library push failed; retrying", "in", delay.String())
		next = time.Now().Add(delay)
		timer.Reset(delay)
		delay = min(2*delay, r.opts.RetryMax)
	}
}

// markPending records commits waiting to be pushed and wakes the retrier,
// which keeps to its backoff while pushes fail.
func (r *Repo) markPending() {
	r.pushMu.Lock()
	r.push.pending = true
	r.pushMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Repo) pushPending() bool {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	return r.push.pending
}

// pushFailing reports a push that failed and waits for its retry: a save
// then leaves the push to the retrier instead of waiting for the remote's
// timeout once more.
func (r *Repo) pushFailing() bool {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	return r.push.pending && r.push.lastErr != ""
}

// pushShared pushes HEAD without the repository lock: readers and writers
// carry on while the remote takes its time. Whatever moves the tracking ref
// or fetches (sync, force-sync, force-push) holds pushing too, so pushes
// never race them.
func (r *Repo) pushShared(ctx context.Context) bool {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	return r.pushUnlocked(ctx)
}

// retryPush is the retrier's pushShared: a sync, force-sync or force-push
// it waited for may have settled the pending push meanwhile.
func (r *Repo) retryPush(ctx context.Context) bool {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	if !r.pushPending() {
		return true
	}
	return r.pushUnlocked(ctx)
}

// pushUnlocked pushes HEAD as it is now, holding pushing but not mu, and
// records the outcome. The push reads the repository only through
// snapshotStorage, and the tracking ref is moved under the exclusive lock:
// go-git rewrites a ref file in place (truncate, then write), so a ref
// written or read without mu can be seen empty, which go-git reports as
// "not found".
func (r *Repo) pushUnlocked(ctx context.Context) bool {
	head := plumbing.NewHash(r.Head())
	start := time.Now()
	err := r.pushCommit(ctx, head)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushed(head, start, err)
}

// pushLocked is pushUnlocked for a caller that holds pushing and mu.
func (r *Repo) pushLocked(ctx context.Context) bool {
	head := plumbing.NewHash(r.Head())
	start := time.Now()
	return r.pushed(head, start, r.pushCommit(ctx, head))
}

// pushed moves the tracking ref to head after a push of it that returned
// err and records the outcome; under mu, so that the status sees both
// at once.
func (r *Repo) pushed(head plumbing.Hash, start time.Time, err error) bool {
	if err == nil {
		err = r.setTracking(head)
	}
	r.opts.Metrics.observe("push", start, err)
	return r.recordPush(head, err)
}

// pushCommit pushes commit head to the remote branch (a fast-forward
// only). It opens a go-git handle of its own, whose references are a
// snapshot holding just the branch at head: objects are immutable and
// written whole (to a temporary file, then renamed), so reading them
// beside writers is safe, but references are not, and go-git's push reads
// every reference and writes the tracking ones.
func (r *Repo) pushCommit(ctx context.Context, head plumbing.Hash) error {
	g, err := git.PlainOpen(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("open library repository: %w", err)
	}
	fsys, ok := g.Storer.(*filesystem.Storage)
	if !ok {
		return fmt.Errorf("library repository storage is a %T", g.Storer)
	}
	refs := memory.ReferenceStorage{}
	if err := refs.SetReference(plumbing.NewHashReference(r.branchRef(), head)); err != nil {
		return err
	}
	// No fetch refspecs: go-git then leaves tracking refs to the caller.
	remote := git.NewRemote(snapshotStorage{Storage: fsys, refs: refs},
		&gitconfig.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{r.opts.Remote}})
	ctx, cancel := context.WithTimeout(ctx, r.opts.RemoteTimeout)
	defer cancel()
	spec := gitconfig.RefSpec(fmt.Sprintf("%s:%s", r.branchRef(), r.branchRef()))
	err = remote.PushContext(ctx, &git.PushOptions{RemoteName: git.DefaultRemoteName, RefSpecs: []gitconfig.RefSpec{spec}, Auth: r.opts.Auth})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = nil
	}
	return err
}

// snapshotStorage is a repository's storage with references of its own.
// It embeds the filesystem storage itself, not an interface, so that a
// push still reuses the deltas in its packs.
type snapshotStorage struct {
	*filesystem.Storage
	refs memory.ReferenceStorage
}

func (s snapshotStorage) SetReference(ref *plumbing.Reference) error {
	return s.refs.SetReference(ref)
}

func (s snapshotStorage) CheckAndSetReference(ref, old *plumbing.Reference) error {
	return s.refs.CheckAndSetReference(ref, old)
}

func (s snapshotStorage) Reference(n plumbing.ReferenceName) (*plumbing.Reference, error) {
	return s.refs.Reference(n)
}

func (s snapshotStorage) IterReferences() (storer.ReferenceIter, error) {
	return s.refs.IterReferences()
}

func (s snapshotStorage) RemoveReference(n plumbing.ReferenceName) error {
	return s.refs.RemoveReference(n)
}

func (s snapshotStorage) CountLooseRefs() (int, error) { return s.refs.CountLooseRefs() }

func (s snapshotStorage) PackRefs() error { return s.refs.PackRefs() }

var _ storage.Storer = snapshotStorage{}

// recordPush records the outcome of a push of commit pushed for the status
// and the retrier. A push that succeeded leaves the push pending when HEAD
// has moved on since (a commit made meanwhile whose own push was left to
// the retrier).
func (r *Repo) recordPush(pushed plumbing.Hash, err error) bool {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	r.push.attempts++
	if err != nil {
		if errors.Is(err, git.ErrForceNeeded) || strings.Contains(err.Error(), "non-fast-forward") {
			err = fmt.Errorf("%w: the remote has commits this library does not; sync, then force-sync or force-push", ErrDiverged)
		}
		r.push.lastErr = redact(err.Error(), r.opts.Remote)
		r.push.lastErrAt = r.opts.Now()
		r.opts.Metrics.pushPending.Set(1)
		return false
	}
	r.push.pending = r.Head() != pushed.String()
	r.push.lastErr = ""
	r.push.lastOK = r.opts.Now()
	if !r.push.pending {
		r.opts.Metrics.pushPending.Set(0)
		return true
	}
	r.opts.Metrics.pushPending.Set(1)
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return true
}

// setTracking records that the remote branch is now at h. Only under mu.
func (r *Repo) setTracking(h plumbing.Hash) error {
	return r.git.Storer.SetReference(plumbing.NewHashReference(r.trackingRef(), h))
}

// redact keeps credentials that a URL might carry out of messages.
func redact(msg, remote string) string {
	if i := strings.Index(remote, "@"); i > 0 && strings.Contains(remote, "://") {
		msg = strings.ReplaceAll(msg, remote, remote[:strings.Index(remote, "://")+3]+"***"+remote[i:])
	}
	return msg
}

// fetchLocked fetches the branch into its tracking ref and returns the
// remote's commit, or nil when the remote has no such branch.
func (r *Repo) fetchLocked(ctx context.Context) (*plumbing.Hash, error) {
	if !r.HasRemote() {
		return nil, ErrNoRemote
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RemoteTimeout)
	defer cancel()
	start := time.Now()
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:%s", r.branchRef(), r.trackingRef()))
	err := r.git.FetchContext(ctx, &git.FetchOptions{RemoteName: git.DefaultRemoteName, RefSpecs: []gitconfig.RefSpec{spec}, Auth: r.opts.Auth, Force: true})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = nil
	}
	if isMissingRef(err) || errors.Is(err, transport.ErrEmptyRemoteRepository) {
		r.opts.Metrics.observe("fetch", start, nil)
		return nil, nil
	}
	r.opts.Metrics.observe("fetch", start, err)
	if err != nil {
		return nil, fmt.Errorf("fetch: %s", redact(err.Error(), r.opts.Remote))
	}
	now := r.opts.Now()
	r.fetchedAt.Store(&now)
	ref, err := r.git.Reference(r.trackingRef(), true)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.trackingRef(), err)
	}
	h := ref.Hash()
	return &h, nil
}

// Sync fetches the remote and fast-forwards to it; local commits the
// remote lacks are pushed. When both sides have commits the other lacks it
// returns ErrDiverged and changes nothing locally.
func (r *Repo) Sync(ctx context.Context) (SyncResult, error) {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	r.mu.Lock()
	res, err := r.syncLocked(ctx)
	r.mu.Unlock()
	if err == nil && res.Revision != res.Previous {
		r.opts.OnHead(res.Revision)
	}
	return res, err
}

func (r *Repo) syncLocked(ctx context.Context) (SyncResult, error) {
	local := r.Head()
	res := SyncResult{Action: "up_to_date", Revision: local, Previous: local}
	remote, err := r.fetchLocked(ctx)
	if err != nil {
		return res, err
	}
	if remote == nil { // the remote branch does not exist yet: publish ours
		if !r.pushLocked(ctx) {
			return res, r.lastPushError()
		}
		res.Action = "pushed"
		return res, nil
	}
	localHash := plumbing.NewHash(local)
	if *remote == localHash {
		return res, nil
	}
	behind, err := r.isAncestor(localHash, *remote)
	if err != nil {
		return res, err
	}
	if behind {
		if err := r.resetTo(*remote); err != nil {
			return res, err
		}
		res.Action, res.Revision = "fast_forward", remote.String()
		return res, nil
	}
	ahead, err := r.isAncestor(*remote, localHash)
	if err != nil {
		return res, err
	}
	if !ahead {
		return res, ErrDiverged
	}
	if !r.pushLocked(ctx) {
		return res, r.lastPushError()
	}
	res.Action = "pushed"
	return res, nil
}

func (r *Repo) lastPushError() error {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	if strings.Contains(r.push.lastErr, ErrDiverged.Error()) {
		return ErrDiverged
	}
	return fmt.Errorf("push: %s", r.push.lastErr)
}

// ForceSync makes the library the remote's branch, dropping local commits
// the remote lacks.
func (r *Repo) ForceSync(ctx context.Context) (SyncResult, error) {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	r.mu.Lock()
	res, err := r.forceSyncLocked(ctx)
	r.mu.Unlock()
	if err == nil && res.Revision != res.Previous {
		r.opts.OnHead(res.Revision)
	}
	return res, err
}

func (r *Repo) forceSyncLocked(ctx context.Context) (SyncResult, error) {
	local := r.Head()
	res := SyncResult{Action: "up_to_date", Revision: local, Previous: local}
	remote, err := r.fetchLocked(ctx)
	if err != nil {
		return res, err
	}
	if remote == nil {
		return res, fmt.Errorf("%w: the remote has no branch %s to reset to", ErrUnknownRevision, r.opts.Branch)
	}
	if err := r.resetTo(*remote); err != nil {
		return res, err
	}
	r.pushMu.Lock()
	r.push = pushState{lastOK: r.push.lastOK}
	r.pushMu.Unlock()
	r.opts.Metrics.pushPending.Set(0)
	if remote.String() != local {
		res.Action = "reset"
	}
	res.Revision = remote.String()
	return res, nil
}

// ForcePush replaces the remote branch with the library's, provided the
// remote is still where the last fetch saw it (a lease): a commit pushed by
// someone else since then is never overwritten unseen.
func (r *Repo) ForcePush(ctx context.Context) (SyncResult, error) {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	local := r.Head()
	res := SyncResult{Action: "pushed", Revision: local, Previous: local}
	if !r.HasRemote() {
		return res, ErrNoRemote
	}
	lease := &git.ForceWithLease{RefName: r.branchRef()}
	if ref, err := r.git.Reference(r.trackingRef(), true); err == nil {
		lease.Hash = ref.Hash()
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RemoteTimeout)
	defer cancel()
	start := time.Now()
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:%s", r.branchRef(), r.branchRef()))
	err := r.git.PushContext(ctx, &git.PushOptions{RemoteName: git.DefaultRemoteName, RefSpecs: []gitconfig.RefSpec{spec}, Auth: r.opts.Auth, ForceWithLease: lease})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = nil
	}
	r.opts.Metrics.observe("force_push", start, err)
	if err != nil {
		if strings.Contains(err.Error(), "non-fast-forward") {
			return res, ErrStaleLease
		}
		return res, fmt.Errorf("force push: %s", redact(err.Error(), r.opts.Remote))
	}
	if err := r.setTracking(plumbing.NewHash(local)); err != nil {
		return res, err
	}
	r.pushMu.Lock()
	r.push = pushState{lastOK: r.opts.Now()}
	r.pushMu.Unlock()
	r.opts.Metrics.pushPending.Set(0)
	return res, nil
}

// resetTo moves the branch and the work tree to commit h.
func (r *Repo) resetTo(h plumbing.Hash) error {
	start := time.Now()
	err := r.wt.Reset(&git.ResetOptions{Commit: h, Mode: git.HardReset})
	if err == nil {
		err = r.wt.Clean(&git.CleanOptions{Dir: true})
	}
	r.opts.Metrics.observe("reset", start, err)
	if err != nil {
		return fmt.Errorf("reset to %s: %w", h, err)
	}
	return r.refreshHead()
}

// isAncestor reports whether a is reachable from b (a == b counts).
func (r *Repo) isAncestor(a, b plumbing.Hash) (bool, error) {
	ca, err := r.git.CommitObject(a)
	if err != nil {
		return false, fmt.Errorf("read commit %s: %w", a, err)
	}
	cb, err := r.git.CommitObject(b)
	if err != nil {
		return false, fmt.Errorf("read commit %s: %w", b, err)
	}
	return ca.IsAncestor(cb)
}
