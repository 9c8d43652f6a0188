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
	"github.com/go-git/go-git/v5/plumbing/transport"
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
		if r.pushShared(ctx) {
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

// pushShared pushes the branch with a go-git handle of its own and no
// repository lock: readers and writers carry on while the remote takes its
// time. That is safe because a push only reads objects, which are
// immutable and written whole, and refs, which are replaced atomically;
// whatever moves the tracking ref or fetches (sync, force-sync,
// force-push) holds pushing too, so pushes never race them.
func (r *Repo) pushShared(ctx context.Context) bool {
	r.pushing.Lock()
	defer r.pushing.Unlock()
	g, err := git.PlainOpen(r.opts.Dir)
	if err != nil {
		return r.recordPush(fmt.Errorf("open library repository: %w", err))
	}
	return r.pushWith(ctx, g)
}

// pushWith pushes the branch through g and records the outcome.
func (r *Repo) pushWith(ctx context.Context, g *git.Repository) bool {
	ctx, cancel := context.WithTimeout(ctx, r.opts.RemoteTimeout)
	defer cancel()
	start := time.Now()
	spec := gitconfig.RefSpec(fmt.Sprintf("%s:%s", r.branchRef(), r.branchRef()))
	err := g.PushContext(ctx, &git.PushOptions{RemoteName: git.DefaultRemoteName, RefSpecs: []gitconfig.RefSpec{spec}, Auth: r.opts.Auth})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = nil
	}
	if err == nil {
		err = r.setTracking(g) // go-git leaves the tracking ref alone for some transports
	}
	r.opts.Metrics.observe("push", start, err)
	return r.recordPush(err)
}

// recordPush records a push's outcome for the status and the retrier.
func (r *Repo) recordPush(err error) bool {
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
	r.push.pending = false
	r.push.lastErr = ""
	r.push.lastOK = r.opts.Now()
	r.opts.Metrics.pushPending.Set(0)
	return true
}

// setTracking records that the remote branch is now our HEAD.
func (r *Repo) setTracking(g *git.Repository) error {
	head, err := g.Head()
	if err != nil {
		return err
	}
	return g.Storer.SetReference(plumbing.NewHashReference(r.trackingRef(), head.Hash()))
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
		if !r.pushWith(ctx, r.git) {
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
	if !r.pushWith(ctx, r.git) {
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
	if err := r.setTracking(r.git); err != nil {
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
