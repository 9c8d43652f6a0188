// Package testbin gives tests the binaries they run as child processes:
// Sortie's services, the workspace-agent and the scripted stand-in agent
// CLI (fake-agent).
//
// `make test` builds every one into bin/ before `go test` starts and says
// so in SORTIE_TEST_BIN_DIR: a test never spends its deadline compiling,
// and a binary that is missing there is a failure naming `make build`. A
// test run by hand, without that variable, builds what it asks for into
// its own temporary folder (with the same flags as `make build`), so one
// package's tests still run with a plain `go test`.
package testbin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// DirEnv names the folder `make build` put the binaries in.
const DirEnv = "SORTIE_TEST_BIN_DIR"

// commands maps each binary to its module (from the repository root) and
// the package that builds it; it mirrors the Makefile's COMMANDS.
var commands = map[string][2]string{
	"auth":               {"services/auth", "./cmd/auth"},
	"workspace-operator": {"services/workspace-operator", "./cmd/workspace-operator"},
	"workspace-agent":    {"services/workspace-operator", "./cmd/workspace-agent"},
	"library":            {"services/library", "./cmd/library"},
	"mission-control":    {"services/mission-control", "./cmd/mission-control"},
	"fake-agent":         {"services/mission-control", "./cmd/fake-agent"},
	"gateway":            {"hack/tools", "./cmd/gateway"},
}

// Names lists the binaries Path knows.
func Names() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Path returns the path of the named binary, failing the test when it
// cannot be had. Every binary is static (CGO off), so it also runs inside
// a workspace's container.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	cmd, ok := commands[name]
	if !ok {
		tb.Fatalf("testbin: no binary %q (known: %v)", name, Names())
	}
	if dir := os.Getenv(DirEnv); dir != "" {
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err != nil || info.Mode()&0o111 == 0 {
			tb.Fatalf("testbin: %s is not an executable built by `make build` (%s=%s): %v", p, DirEnv, dir, err)
		}
		return p
	}
	root, err := RepoRoot()
	if err != nil {
		tb.Fatalf("testbin: %v", err)
	}
	out := filepath.Join(tb.TempDir(), name)
	build := exec.Command(goTool(), "build", "-trimpath", "-o", out, cmd[1])
	build.Dir = filepath.Join(root, cmd[0])
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	tb.Logf("testbin: %s is not set, so building %s (make test builds it before the tests)", DirEnv, name)
	if b, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("testbin: go build %s: %v\n%s", name, err, b)
	}
	return out
}

// goTool is the go command: the one on PATH, else the one that built the
// test (go test puts its own first on PATH, but a test binary may be run
// directly).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // only when go is not on PATH
}

// RepoRoot returns the nearest folder at or above the working directory
// that holds go.work: the repository root.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find repository root: %w", err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repository root: no go.work in %s or any folder above it", dir)
		}
		d = parent
	}
}
