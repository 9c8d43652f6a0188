package testbin

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A folder from make build is used as it is: nothing is compiled.
func TestPathFromMakeBuild(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "gateway")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho prebuilt\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(DirEnv, dir)
	if got := Path(t, "gateway"); got != exe {
		t.Fatalf("Path = %s, want the prebuilt %s", got, exe)
	}
}

// fatalTB records a Fatalf and ends the goroutine as testing.T does.
type fatalTB struct {
	*testing.T
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A binary missing from make build's folder fails the test and says what
// builds it; it is never built behind the test's back.
func TestPathMissingFromMakeBuild(t *testing.T) {
	t.Setenv(DirEnv, t.TempDir())
	f := &fatalTB{T: t}
	done := make(chan struct{})
	go func() { defer close(done); Path(f, "library") }()
	<-done
	if !strings.Contains(f.msg, "make build") {
		t.Fatalf("missing binary: %q, want a failure naming make build", f.msg)
	}
}
