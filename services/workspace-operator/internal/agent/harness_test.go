package agent_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sortie.dev/services/workspace-operator/internal/agent"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

const testToken = "s3cret-test-token"

// harness is one real agent serving on a loopback port, with temp dirs for
// its root, workdir and state.
type harness struct {
	cfg    agent.Config
	url    string
	client *agentapi.Client
	root   string // the only allowed file root; workdir and state live in it
}

// startAgent runs an agent until the test ends. mutate may adjust the config.
func startAgent(tb testing.TB, mutate func(*agent.Config)) *harness {
	tb.Helper()
	root := tb.TempDir()
	cfg := agent.Defaults()
	cfg.Token = testToken
	cfg.Workdir = filepath.Join(root, "work")
	cfg.StateDir = filepath.Join(root, "work", ".sortie")
	cfg.Roots = []string{root}
	cfg.Grace = 2 * time.Second
	if err := os.MkdirAll(cfg.Workdir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return serve(tb, cfg, root)
}

func serve(tb testing.TB, cfg agent.Config, root string) *harness {
	tb.Helper()
	a, err := agent.New(cfg, testLogger())
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + ln.Addr().String()
	return &harness{cfg: cfg, url: url, root: root, client: agentapi.NewClient(url, testToken, &http.Client{})}
}

// testLogger is silent unless AGENT_TEST_LOG is set: the agent logs from
// goroutines that may outlive a test, where t.Log would panic.
func testLogger() *slog.Logger {
	if os.Getenv("AGENT_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// liveInGroup lists the pids of processes in process group pgid that are
// still alive (zombies do not count: they are dead and only await a reaper
// that, outside a container, is not ours).
func liveInGroup(tb testing.TB, pgid int) []int {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			live = append(live, pid)
		}
	}
	return live
}

func errCode(err error) string { return agentapi.ErrorCode(err) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
