// Command fake-agent is a scripted stand-in for the agent CLIs mission-control
// drives (claude, codex, opencode, amp). It speaks each CLI's real JSONL
// output, takes the prompt the way the real CLI does, runs a real shell
// command as its tool, and keeps session state under the mission's config
// dir, so tests exercise the real command lines, processes and parsers
// without a model or a network.
//
// The CLI is chosen by the basename of argv[0] (install it as claude, codex,
// … via symlinks) or by a leading --cli=NAME. Words in the prompt script the
// run:
//
//	sleep N      pause N seconds before the tool call (cancellation tests)
//	hang         pause for an hour after the first line
//	mute         pause for an hour before printing anything (startup
//	             watchdog tests)
//	fail         end with the CLI's error result and exit status 1
//	crash        print only to stderr and exit 1, like a CLI without auth
//	garbage      interleave non-JSON lines with the output
//	big          the tool prints about 2 MB on one JSON line
//	huge N       the tool call's input (its command, as the CLI prints it)
//	             carries N MB more on one JSON line, like a Write of a huge
//	             file; what runs is the usual command (limit tests)
//	ignore-term  ignore SIGTERM (so only SIGINT or SIGKILL stops it)
//	ignore-int   ignore SIGINT as well (with ignore-term: only SIGKILL)
//	grandchild   start a `sleep` child that outlives the fake unless its
//	             process group is killed
//	dump-env P   write its environment (sorted NAME=value lines) to the
//	             file P first, even when it then fails for want of a
//	             credential (tests check what a CLI process receives)
//
// On SIGINT or SIGTERM the fake stops like the CLI would (Claude and Amp
// print an aborted result; Codex and OpenCode print nothing) and exits 130
// or 143.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a command-line error; like the CLIs' argument parsers the
// fake exits 2 on it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// invocation is what a dialect's argument parser extracts.
type invocation struct {
	prompt   string
	session  string // resume id, or the id to give a new session
	resume   bool
	model    string
	thinking bool
	partial  bool // Claude --include-partial-messages
	dir      string
}

// dialect writes one CLI's output format.
type dialect interface {
	parse(args []string, stdin io.Reader) (invocation, error)
	// authorised reports whether the credentials the CLI needs are in env.
	authorised() bool
	start(inv invocation)
	thinking(text string)
	text(text string)
	toolCall(id, command string)
	toolResult(id, command, output string, exitCode int)
	done(answer string)
	fail(msg string)
	// interrupted is printed on SIGINT/SIGTERM; most CLIs print nothing.
	interrupted()
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(args[0])
	args = args[1:]
	if len(args) > 0 && strings.HasPrefix(args[0], "--cli=") {
		name, args = strings.TrimPrefix(args[0], "--cli="), args[1:]
	}
	out := &out{enc: json.NewEncoder(stdout), raw: stdout}
	var d dialect
	switch name {
	case "claude":
		d = &claude{out: out}
	case "codex":
		d = &codex{out: out}
	case "opencode":
		d = &opencode{out: out}
	case "amp":
		d = &amp{claude: claude{out: out}}
	default:
		fmt.Fprintf(stderr, "fake-agent: unknown CLI %q (use claude, codex, opencode or amp)\n", name)
		return 2
	}
	inv, err := d.parse(args, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	s := newScript(inv.prompt)
	if s.dumpEnv != "" {
		env := os.Environ()
		sort.Strings(env)
		if err := os.WriteFile(s.dumpEnv, []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
			fmt.Fprintf(stderr, "dump-env: %v\n", err)
			return 1
		}
	}
	if s.crash || !d.authorised() {
		fmt.Fprintln(stderr, "Error: authentication failed: no API key or login found")
		return 1
	}
	if inv.dir != "" {
		if err := os.Chdir(inv.dir); err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
	}
	return play(d, inv, s, out, stderr)
}

// script is what the prompt asks the fake to do.
type script struct {
	sleep                                 time.Duration
	huge                                  int // bytes added to the tool call's input
	fail, crash, garbage, big, ignoreTerm bool
	ignoreInt                             bool
	grandchild                            bool
	mute                                  bool
	dumpEnv                               string // file to write the environment to
}

func newScript(prompt string) script {
	var s script
	orig := strings.Fields(prompt)
	words := strings.Fields(strings.ToLower(prompt))
	for i, w := range words {
		switch w {
		case "dump-env":
			if i+1 < len(orig) {
				s.dumpEnv = orig[i+1]
			}
		case "sleep":
			if i+1 < len(words) {
				if n, err := strconv.ParseFloat(words[i+1], 64); err == nil {
					s.sleep = time.Duration(n * float64(time.Second))
				}
			}
		case "huge":
			if i+1 < len(words) {
				if n, err := strconv.ParseFloat(words[i+1], 64); err == nil && n > 0 {
					s.huge = int(n * (1 << 20))
				}
			}
		case "hang":
			s.sleep = time.Hour
		case "mute":
			s.mute = true
		case "fail":
			s.fail = true
		case "crash":
			s.crash = true
		case "garbage":
			s.garbage = true
		case "big":
			s.big = true
		case "ignore-term":
			s.ignoreTerm = true
		case "ignore-int":
			s.ignoreInt = true
		case "grandchild":
			s.grandchild = true
		}
	}
	return s
}

// play runs the scripted session.
func play(d dialect, inv invocation, s script, o *out, stderr io.Writer) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if s.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if s.ignoreInt {
		signal.Ignore(syscall.SIGINT)
	}
	if s.grandchild {
		// Not waited for on purpose: only a process-group kill ends it.
		if err := exec.Command("sleep", "1000").Start(); err != nil {
			fmt.Fprintf(stderr, "start grandchild: %v\n", err)
		}
	}
	if s.mute {
		select {
		case <-time.After(time.Hour):
		case sig := <-sigs:
			return exitFor(sig)
		}
	}
	d.start(inv)
	o.noise(s.garbage, "\x1b[33mwarning\x1b[0m: telemetry disabled")
	d.thinking("The user wants to see the files here. I will list them.")
	if s.sleep > 0 {
		select {
		case <-time.After(s.sleep):
		case sig := <-sigs:
			d.interrupted()
			return exitFor(sig)
		}
	}
	if s.fail {
		d.fail("API Error: 500 Internal server error (scripted failure)")
		return 1
	}
	d.text("Let me list the files.")
	command := "ls -a"
	if s.big {
		command = "seq 1 300000"
	}
	id := "call_" + randomHex(6)
	shown := command
	if s.huge > 0 {
		shown = command + " # " + strings.Repeat("x", s.huge)
	}
	d.toolCall(id, shown)
	output, code := shell(command)
	o.noise(s.garbage, "panic: not really, just noise on stderr")
	d.toolResult(id, shown, output, code)
	n := len(strings.Fields(output))
	d.text(fmt.Sprintf("Done. The command printed %d entries.", n))
	d.done(fmt.Sprintf("Done. The command printed %d entries.", n))
	return 0
}

func exitFor(sig os.Signal) int {
	if sig == syscall.SIGINT {
		return 130
	}
	return 143
}

// shell runs command like an agent's shell tool: combined output, exit code.
func shell(command string) (string, int) {
	b, err := exec.Command("sh", "-c", command).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return err.Error(), 127
	}
	return string(b), code
}

// out writes JSON lines (one Write each, so a reader never sees half a line).
type out struct {
	enc *json.Encoder
	raw io.Writer
}

func (o *out) line(v any) {
	// Encoding maps and strings cannot fail; a closed stdout ends the run.
	if err := o.enc.Encode(v); err != nil {
		os.Exit(141)
	}
}

func (o *out) noise(on bool, s string) {
	if on {
		fmt.Fprintln(o.raw, s)
	}
}

// obj is a JSON object literal.
type obj = map[string]any

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:]
}

// readPrompt reads stdin the way the CLIs do when no prompt argument is given.
func readPrompt(stdin io.Reader) (string, error) {
	b, err := io.ReadAll(bufio.NewReader(stdin))
	if err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// flagValue splits "--name=value"; ok is false for other arguments.
func flagValue(arg, name string) (string, bool) {
	return strings.CutPrefix(arg, name+"=")
}

// sessionFile is where a fake CLI keeps a session, under the per-mission
// config dir the command builder chose, so resume works only when the
// builder points the next turn at the same dir.
func sessionFile(dirEnv, fallback, id string) string {
	dir := os.Getenv(dirEnv)
	if dir == "" {
		dir = filepath.Join(os.Getenv("HOME"), fallback)
	}
	return filepath.Join(dir, "sessions", id+".jsonl")
}

func saveSession(path string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		_ = os.WriteFile(path, []byte("{}\n"), 0o600) // best effort, like a cache
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
