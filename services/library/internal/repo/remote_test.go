package repo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// published opens a library on a new bare remote and pushes its seed.
func published(t *testing.T) (r *Repo, remote string) {
	t.Helper()
	remote = filepath.Join(t.TempDir(), "remote.git")
	gitCmd(t, "", "init", "--bare", "--initial-branch=main", remote)
	r, err := Open(t.Context(), Options{
		Dir: filepath.Join(t.TempDir(), "library"), Remote: remote,
		Seed: fstest.MapFS{"command/hello.md": {Data: []byte("Hello")}},
		Log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if !r.pushShared(t.Context()) {
		t.Fatalf("publish the seed: %s", r.lastPushError())
	}
	select { // no retrier runs here: drop Open's kick to it
	case <-r.kick:
	default:
	}
	return r, remote
}

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	out, err := exec.Command("git", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func save(t *testing.T, r *Repo, name string) Commit {
	t.Helper()
	c, err := r.Change(context.Background(), Signature{Name: "t", Email: "t@t"}, "save "+name, func(tx *Tx) error {
		return tx.WriteFile("command/"+name+".md", []byte(name))
	})
	if err != nil {
		t.Error(err)
	}
	return c
}

// A push runs without the repository lock, and go-git rewrites a ref file
// in place: a status taken while a push moved the tracking ref once found
// the file empty, took the ref for missing and counted every commit as
// ahead of the remote.
func TestStatusBesidePushes(t *testing.T) {
	r, _ := published(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		defer close(stop)
		for range 200 {
			if !r.pushShared(t.Context()) {
				t.Errorf("push: %s", r.lastPushError())
				return
			}
		}
	})
	for n := 0; ; n++ {
		select {
		case <-stop:
			wg.Wait()
			t.Logf("%d statuses", n)
			return
		default:
		}
		st, err := r.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Ahead != 0 || st.Behind != 0 {
			t.Fatalf("status %d while pushing what the remote has: ahead %d, behind %d", n, st.Ahead, st.Behind)
		}
	}
}

// A push beside commits reads the branch as a commit left it, never
// half-written: no push fails, and the last one publishes everything.
func TestPushesBesideCommits(t *testing.T) {
	r, remote := published(t)
	const writers, each = 4, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				save(t, r, fmt.Sprintf("w%d-%d", w, i))
			}
		})
	}
	wg.Wait()
	if n := testutil.ToFloat64(r.opts.Metrics.ops.WithLabelValues("push", "error")); n != 0 {
		t.Errorf("%v pushes failed; the last: %s", n, r.lastPushError())
	}
	st, err := r.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.PushPending || st.Ahead != 0 || st.Behind != 0 {
		t.Errorf("status: %+v", st)
	}
	if got := gitCmd(t, remote, "rev-parse", "main"); got != r.Head() {
		t.Errorf("remote main %s, HEAD %s", got, r.Head())
	}
}

// A push that succeeds with a commit older than HEAD (one made while it
// ran) leaves the newer commit pending, and the tracking ref where the
// remote is.
func TestPushOfAnOlderCommitLeavesThePushPending(t *testing.T) {
	r, remote := published(t)
	old := plumbing.NewHash(r.Head())
	r.mu.Lock()
	c, err := r.change(Signature{Name: "t", Email: "t@t"}, func(tx *Tx) (string, error) {
		return "unpushed", tx.WriteFile("command/unpushed.md", []byte("x"))
	})
	r.mu.Unlock()
	if err != nil || !c.Changed {
		t.Fatalf("commit: %v %+v", err, c)
	}
	r.mu.Lock()
	ok := r.pushed(old, time.Now(), nil)
	r.mu.Unlock()
	if !ok || !r.pushPending() || len(r.kick) != 1 {
		t.Fatalf("a push of %s with HEAD at %s: ok %v, pending %v, retrier kicked %v", old, r.Head(), ok, r.pushPending(), len(r.kick) == 1)
	}
	st, err := r.Status(t.Context())
	if err != nil || st.Ahead != 1 || !st.PushPending {
		t.Fatalf("status: %+v %v", st, err)
	}
	// The retrier, kicked, publishes the newer commit.
	if !r.retryPush(t.Context()) || r.pushPending() {
		t.Fatalf("retry: %s", r.lastPushError())
	}
	if got := gitCmd(t, remote, "rev-parse", "main"); got != c.Revision {
		t.Errorf("remote main %s, HEAD %s", got, c.Revision)
	}
}
