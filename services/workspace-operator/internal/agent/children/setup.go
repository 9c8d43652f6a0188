package children

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Errors for bad child settings; the HTTP layer answers 400 to them.
var (
	ErrBadEnv    = errors.New("invalid environment variable")
	ErrBadDir    = errors.New("invalid working directory")
	ErrBadSignal = errors.New("unsupported signal")
)

// Environ returns base with extra appended (later entries win in os/exec),
// in sorted key order so that runs are reproducible.
func Environ(base []string, extra map[string]string) ([]string, error) {
	keys := make([]string, 0, len(extra))
	for k, v := range extra {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: %q", ErrBadEnv, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	env := slices.Clip(base)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env, nil
}

// InheritedEnv returns environ without the agent's own SORTIE_AGENT_*
// settings, so that no child ever sees the API token, plus
// SORTIE_WORKSPACE=1 so scripts can tell they run in a workspace.
func InheritedEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "SORTIE_AGENT_") {
			env = append(env, kv)
		}
	}
	return append(env, "SORTIE_WORKSPACE=1")
}

// Dir resolves a request's cwd: empty means workdir, a relative path is
// joined to workdir. It must name an existing directory.
func Dir(workdir, cwd string) (string, error) {
	dir := workdir
	switch {
	case cwd == "":
	case filepath.IsAbs(cwd):
		dir = filepath.Clean(cwd)
	default:
		dir = filepath.Join(workdir, cwd)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadDir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s is not a directory", ErrBadDir, dir)
	}
	return dir, nil
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGTERM: "TERM",
	syscall.SIGKILL: "KILL",
	syscall.SIGINT:  "INT",
	syscall.SIGHUP:  "HUP",
	syscall.SIGQUIT: "QUIT",
	syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
	syscall.SIGPIPE: "PIPE",
	syscall.SIGABRT: "ABRT",
	syscall.SIGSEGV: "SEGV",
	syscall.SIGBUS:  "BUS",
	syscall.SIGFPE:  "FPE",
	syscall.SIGILL:  "ILL",
	syscall.SIGALRM: "ALRM",
	syscall.SIGXCPU: "XCPU",
	syscall.SIGXFSZ: "XFSZ",
	syscall.SIGSYS:  "SYS",
	syscall.SIGTRAP: "TRAP",
}

// SignalName names sig without the SIG prefix ("TERM"), or "SIG<n>" for
// a signal without a common name.
func SignalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// ParseSignal accepts the signals a client may send: TERM, KILL, INT, HUP,
// QUIT, USR1 and USR2, with or without the SIG prefix, in any case.
func ParseSignal(name string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "TERM":
		return syscall.SIGTERM, nil
	case "KILL":
		return syscall.SIGKILL, nil
	case "INT":
		return syscall.SIGINT, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "QUIT":
		return syscall.SIGQUIT, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrBadSignal, name)
}

// Status reads how a waited-for child ended: an exit code, or the signal
// that killed it.
func Status(ps *os.ProcessState) (exitCode *int, signal *string) {
	if ps == nil {
		return nil, nil
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		s := SignalName(ws.Signal())
		return nil, &s
	}
	code := ps.ExitCode()
	return &code, nil
}
