package service_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
)

// remotePair is two library services cloned from one bare remote, as two
// installs (or a library and a colleague's clone) sharing it.
func remotePair(t *testing.T) (remote string, a, b *library) {
	t.Helper()
	remote = newRemote(t)
	// The remote is empty: the first library seeds it and pushes.
	a = startLibrary(t, map[string]string{"SORTIE_LIBRARY_REMOTE": remote})
	testwait.True(t, 20*time.Second, "the seed to be pushed", func() bool { return a.status()["push_pending"] == false })
	if got := git(t, remote, "rev-parse", "main"); got != a.status()["head"] {
		t.Fatalf("remote main %s, library head %v", got, a.status()["head"])
	}
	b = startLibrary(t, map[string]string{"SORTIE_LIBRARY_REMOTE": remote})
	if b.status()["head"] != a.status()["head"] {
		t.Fatalf("the clone is not at the remote's head")
	}
	return remote, a, b
}

func TestSaveInOneSyncInTheOther(t *testing.T) {
	remote, a, b := remotePair(t)
	rev := a.must(200, "PUT", "/api/library/command/hello", content("Hello")).Header.Get("X-Library-Revision")
	if got := git(t, remote, "rev-parse", "main"); got != rev {
		t.Fatalf("save was not pushed: remote %s, commit %s", got, rev)
	}
	b.must(404, "GET", "/api/library/command/hello", nil)
	if st := b.status(); st["ahead"] != 0.0 || st["behind"] != 0.0 {
		t.Errorf("before a fetch nothing is known: %v", st)
	}
	res := b.must(200, "POST", "/api/library/sync", nil).Object(t)
	if res["action"] != "fast_forward" || res["revision"] != rev {
		t.Fatalf("sync: %v", res)
	}
	if got := b.must(200, "GET", "/api/library/command/hello", nil).Object(t)["content"]; got != "Hello" {
		t.Errorf("content after sync: %v", got)
	}
	if res := b.must(200, "POST", "/api/library/sync", nil).Object(t); res["action"] != "up_to_date" {
		t.Errorf("second sync: %v", res)
	}
	if st := b.status(); st["last_fetch_at"] == nil || st["head"] != rev {
		t.Errorf("status: %v", st)
	}
}

// diverge makes a and b each commit something the other lacks; a's
// commit reaches the remote, b's push is refused.
func diverge(t *testing.T, a, b *library, tag string) {
	t.Helper()
	a.must(200, "PUT", "/api/library/command/from-a-"+tag, content("A"))
	b.must(200, "PUT", "/api/library/command/from-b-"+tag, content("B"))
	testwait.True(t, 20*time.Second, "b's refused push to be reported", func() bool { return b.status()["last_push_error"] != nil })
}

func TestDivergence(t *testing.T) {
	remote, a, b := remotePair(t)
	diverge(t, a, b, "1")
	st := b.status()
	if st["push_pending"] != true || st["ahead"] != 1.0 {
		t.Errorf("status after a refused push: %v", st)
	}
	bHead := git(t, b.repoDir(), "rev-parse", "HEAD")
	r := b.do(b.alice, "POST", "/api/library/sync", nil)
	if r.Status != 409 || r.Code(t) != "diverged_history" {
		t.Fatalf("sync of diverged histories: %d %s", r.Status, r.Body)
	}
	// Nothing lost: b's commit and work tree are as they were; a's
	// commit is still on the remote.
	if git(t, b.repoDir(), "rev-parse", "HEAD") != bHead || git(t, b.repoDir(), "status", "--porcelain") != "" {
		t.Errorf("a refused sync changed the library")
	}
	b.must(200, "GET", "/api/library/command/from-b-1", nil)
	if git(t, remote, "rev-parse", "main") != git(t, a.repoDir(), "rev-parse", "HEAD") {
		t.Errorf("the remote lost a's commit")
	}
	if st := b.status(); st["ahead"] != 1.0 || st["behind"] != 1.0 {
		t.Errorf("ahead/behind after the fetch: %v", st)
	}

	t.Run("force-sync takes the remote", func(t *testing.T) {
		res := b.do(b.root, "POST", "/api/library/force-sync", nil)
		if res.Status != 200 || res.Object(t)["action"] != "reset" {
			t.Fatalf("force-sync: %d %s", res.Status, res.Body)
		}
		b.must(404, "GET", "/api/library/command/from-b-1", nil)
		b.must(200, "GET", "/api/library/command/from-a-1", nil)
		if st := b.status(); st["push_pending"] != false || st["last_push_error"] != nil || st["ahead"] != 0.0 {
			t.Errorf("status after force-sync: %v", st)
		}
		if out := git(t, b.repoDir(), "status", "--porcelain"); out != "" {
			t.Errorf("work tree: %s", out)
		}
	})

	t.Run("force-push replaces the remote", func(t *testing.T) {
		diverge(t, a, b, "2")
		if r := b.do(b.alice, "POST", "/api/library/sync", nil); r.Status != 409 {
			t.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		res := b.do(b.root, "POST", "/api/library/force-push", nil)
		if res.Status != 200 {
			t.Fatalf("force-push: %d %s", res.Status, res.Body)
		}
		if git(t, remote, "rev-parse", "main") != git(t, b.repoDir(), "rev-parse", "HEAD") {
			t.Errorf("the remote is not b's history")
		}
		if st := b.status(); st["push_pending"] != false || st["ahead"] != 0.0 {
			t.Errorf("b after force-push: %v", st)
		}
		// a now holds a commit the remote dropped: its sync refuses, and
		// force-sync brings it in line.
		if r := a.do(a.alice, "POST", "/api/library/sync", nil); r.Status != 409 || r.Code(t) != "diverged_history" {
			t.Fatalf("a's sync: %d %s", r.Status, r.Body)
		}
		a.must(200, "GET", "/api/library/command/from-a-2", nil) // still there
		if r := a.do(a.root, "POST", "/api/library/force-sync", nil); r.Status != 200 {
			t.Fatalf("a's force-sync: %d %s", r.Status, r.Body)
		}
		a.must(200, "GET", "/api/library/command/from-b-2", nil)
	})

	t.Run("force-push never overwrites unseen commits", func(t *testing.T) {
		// b last fetched the remote (through a sync) before a pushes again;
		// b's own push is then refused, and its lease is stale.
		b.must(200, "POST", "/api/library/sync", nil)
		a.must(200, "POST", "/api/library/sync", nil)
		a.must(200, "PUT", "/api/library/command/late-a", content("A"))
		aHead := git(t, a.repoDir(), "rev-parse", "HEAD")
		if git(t, remote, "rev-parse", "main") != aHead {
			t.Fatalf("a's save was not pushed")
		}
		b.must(200, "PUT", "/api/library/command/late-b", content("B"))
		testwait.True(t, 20*time.Second, "b's push to be refused", func() bool { return b.status()["last_push_error"] != nil })
		res := b.do(b.root, "POST", "/api/library/force-push", nil)
		if res.Status != 409 || res.Code(t) != "stale_lease" {
			t.Fatalf("force-push with a stale lease: %d %s", res.Status, res.Body)
		}
		if git(t, remote, "rev-parse", "main") != aHead {
			t.Errorf("the remote lost a's commit")
		}
	})
}

func TestPushFailureIsRetried(t *testing.T) {
	remote, a, _ := remotePair(t)
	away := remote + ".away"
	if err := os.Rename(remote, away); err != nil {
		t.Fatal(err)
	}
	rev := a.must(200, "PUT", "/api/library/rule/kept", content("Keep me")).Header.Get("X-Library-Revision")
	st := a.status()
	if st["push_pending"] != true || st["last_push_error"] == nil || st["ahead"] != 1.0 || st["head"] != rev {
		t.Fatalf("status while the remote is gone: %v", st)
	}
	// Further saves do not wait for the remote; each is still a commit.
	a.must(200, "PUT", "/api/library/rule/kept-too", content("Me too"))
	if err := os.Rename(away, remote); err != nil {
		t.Fatal(err)
	}
	testwait.True(t, 20*time.Second, "the retried push", func() bool { return a.status()["push_pending"] == false })
	st = a.status()
	if st["last_push_error"] != nil || st["last_push_at"] == nil || st["ahead"] != 0.0 {
		t.Errorf("status after the retry: %v", st)
	}
	if git(t, remote, "rev-parse", "main") != st["head"] {
		t.Errorf("the remote does not have both commits")
	}
	if n := git(t, remote, "rev-list", "--count", rev+"^..main"); n != "2" {
		t.Errorf("commits pushed: %s", n)
	}
}

func TestRestartCleansTheWorkTree(t *testing.T) {
	remote, a, _ := remotePair(t)
	a.must(200, "PUT", "/api/library/command/keep", content("original"))
	head := git(t, a.repoDir(), "rev-parse", "HEAD")
	dir := a.repoDir()
	// Debris of a crash: a half-written change, a stray temporary file,
	// an untracked item and a staged but uncommitted edit.
	must(t, os.WriteFile(filepath.Join(dir, "command", "keep.md"), []byte("half writ"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "command", ".tmp-0123"), []byte("x"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "skill", "junk", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "skill", "junk", "SKILL.md"), []byte("junk"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "skill", "junk", "deep", "x.md"), []byte("junk"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "agent", "staged.md"), []byte("staged"), 0o644))
	git(t, dir, "add", "agent/staged.md")

	a.restart()
	if out := git(t, dir, "status", "--porcelain", "--untracked-files=all"); out != "" {
		t.Errorf("work tree after restart:\n%s", out)
	}
	if got := git(t, dir, "rev-parse", "HEAD"); got != head {
		t.Errorf("HEAD moved: %s", got)
	}
	if got := a.must(200, "GET", "/api/library/command/keep", nil).Object(t)["content"]; got != "original" {
		t.Errorf("content: %v", got)
	}
	a.must(404, "GET", "/api/library/skill/junk", nil)
	a.must(404, "GET", "/api/library/agent/staged", nil)
	// The restarted library keeps working against its remote.
	rev := a.must(200, "PUT", "/api/library/command/after", content("x")).Header.Get("X-Library-Revision")
	if git(t, remote, "rev-parse", "main") != rev {
		t.Errorf("push after restart")
	}
}

func TestConcurrentSaves(t *testing.T) {
	remote, a, _ := remotePair(t)
	before, _ := strconv.Atoi(git(t, a.repoDir(), "rev-list", "--count", "HEAD"))
	const writers, each = 16, 6
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				// Half the writers share names so saves of one item race too.
				name := fmt.Sprintf("w%d-%d", w%(writers/2), i)
				r := a.send(a.raw, a.alice, "PUT", "/api/library/command/"+name, content(fmt.Sprintf("writer %d save %d", w, i)))
				if r.Status != 200 {
					errs <- fmt.Errorf("%s: %d %s", name, r.Status, r.Body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	after, _ := strconv.Atoi(git(t, a.repoDir(), "rev-list", "--count", "HEAD"))
	if after-before != writers*each {
		t.Errorf("%d saves made %d commits", writers*each, after-before)
	}
	var list []map[string]any
	a.must(200, "GET", "/api/library/command", nil).Decode(t, &list)
	if len(list) != writers/2*each+2 { // + the starter commands
		t.Errorf("%d commands listed", len(list))
	}
	git(t, a.repoDir(), "fsck", "--strict")
	if out := git(t, a.repoDir(), "status", "--porcelain"); out != "" {
		t.Errorf("work tree: %s", out)
	}
	testwait.True(t, 20*time.Second, "every commit pushed", func() bool { return a.status()["push_pending"] == false })
	if git(t, remote, "rev-parse", "main") != git(t, a.repoDir(), "rev-parse", "HEAD") {
		t.Errorf("remote behind")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
