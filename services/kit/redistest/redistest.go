// Package redistest starts a real redis-server for a test: its own process
// on a free loopback port with a temporary directory, stopped when the test
// ends. Tests never share a server, so they may run in parallel.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr   string        // host:port
	URL    string        // redis://host:port/0
	Client *redis.Client // connected to Addr without a password, closed at cleanup
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result once
}

// Binary returns the redis-server to run: $REDIS_SERVER, else the one on PATH.
func Binary() (string, error) {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b, nil
	}
	b, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is not installed: run `apt-get install redis-server` (Debian/Ubuntu) or `make deps`, or set REDIS_SERVER to its path")
	}
	return b, nil
}

// Start starts a redis-server and fails the test (never skips it) when it
// cannot. Extra arguments are passed as redis config directives, e.g.
// "--appendonly", "yes".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lastErr error
	for range 5 { // a freed port can be taken by someone else before we bind it
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s, err := launch(bin, dir, port, extra)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func launch(bin, dir string, port int, extra []string) (*Server, error) {
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
		"--logfile", filepath.Join(dir, "redis.log"),
	}, extra...)
	cmd, exited, err := run(bin, args)
	if err != nil {
		return nil, err
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	client := redis.NewClient(&redis.Options{Addr: addr})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		// NOAUTH means it is up and wants a password (--requirepass): alive.
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
			break
		}
		select {
		case werr := <-exited:
			_ = client.Close()
			return nil, fmt.Errorf("redis-server exited (%v): %s", werr, tail(filepath.Join(dir, "redis.log")))
		default:
		}
		if time.Now().After(deadline) {
			_ = client.Close()
			_ = cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("redis-server did not answer on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &Server{Addr: addr, URL: "redis://" + addr + "/0", Client: client, cmd: cmd, exited: exited}, nil
}

func run(bin string, args []string) (*exec.Cmd, chan error, error) {
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, exited, nil
}

func (s *Server) stop() {
	_ = s.Client.Close()
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Stop ends the server now, for tests of what a service does while Redis
// is down. Cleanup tolerates an already stopped server.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.exited <- nil // the cleanup's stop reads it again
}

// Restart stops the server and starts it again on the same port and
// directory, for tests of what survives a Redis restart (with AOF on).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	_ = s.cmd.Process.Signal(os.Interrupt) // redis writes its AOF and exits
	<-s.exited
	cmd, exited, err := run(s.cmd.Path, s.cmd.Args[1:])
	if err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for s.Client.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not come back after restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 10 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
