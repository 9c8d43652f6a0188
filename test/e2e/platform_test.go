// Package e2e drives the whole platform the way a user does: `make run`'s
// launcher (hack/run.sh) starts it on this machine, and every request goes
// through the gateway, every answer checked against api/openapi.yaml.
package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
)

// platform is one running Sortie.
type platform struct {
	root      string            // the repository
	state     string            // its state folder
	url       string            // the gateway
	base      int               // its port; Redis and the services follow it
	namespace string            // of its workspaces
	password  string            // single-password mode: the admin's
	users     map[string]string // multi-user mode: username -> password
	usersFile string            // multi-user mode: the file auth reads
	usersMu   sync.Mutex        // guards entries and the file
	entries   []userEntry
	nginx     string // nginx in front of the gateway, as an ingress-nginx would be
	nginxCmd  *exec.Cmd
	cmd       *exec.Cmd
	exited    chan error // run.sh's end
	log       *os.File
}

// The one platform of this test binary, started by TestMain.
var sortie *platform

// The users of the main platform (multi-user mode). The tenancy tests
// remove carol and demote dave while the platform runs.
var users = []struct{ id, name, role string }{
	{"u-admin", "admin", "admin"}, {"u-alice", "alice", "user"}, {"u-bob", "bob", "user"},
	{"u-carol", "carol", "user"}, {"u-dave", "dave", "admin"},
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short: the journeys run the whole platform on the local node (make test runs them)")
		os.Exit(0)
	}
	p, err := startPlatform(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the platform did not start:", err)
		if p != nil {
			p.stop()
			p.dumpLog(os.Stderr)
		}
		os.Exit(1)
	}
	sortie = p
	code := m.Run()
	if code != 0 {
		p.dumpLog(os.Stderr)
	}
	p.stop()
	if code == 0 {
		_ = os.RemoveAll(p.state) // kept after a failure, for its logs
	}
	os.Exit(code)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above %s", dir)
		}
		dir = parent
	}
}

// freeBase finds a run of ports below the ephemeral range that nothing
// listens on: the gateway, Redis and every service get one each.
func freeBase() (int, error) {
	for range 50 {
		base := 20000 + mrand.IntN(9000)
		ok := true
		for i := range 16 {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free run of ports")
}

// startPlatform runs make run's launcher: in multi-user mode with the
// users above, or in single-password mode.
func startPlatform(multiUser bool) (*platform, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	base, err := freeBase()
	if err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp("", "sortie-e2e-")
	if err != nil {
		return nil, err
	}
	p := &platform{root: root, state: state, url: fmt.Sprintf("http://127.0.0.1:%d", base), base: base,
		namespace: fmt.Sprintf("e2e-%d", base)}
	p.log, err = os.Create(filepath.Join(state, "run.log"))
	if err != nil {
		return nil, err
	}
	// Under make test, bin/ and the node's images are built already; run by
	// hand, run.sh builds them first, which takes minutes on a cold cache.
	prebuilt, bound := os.Getenv(testbin.DirEnv) != "", 5*time.Minute
	if !prebuilt {
		bound = 20 * time.Minute
	}
	p.cmd = exec.Command(filepath.Join(root, "hack", "run.sh"))
	p.cmd.Dir = root
	p.cmd.Env = append(os.Environ(),
		"SORTIE_PREBUILT="+strconv.FormatBool(prebuilt),
		"SORTIE_STATE_DIR="+state, "SORTIE_PORT="+strconv.Itoa(base),
		"SORTIE_REDIS_PORT="+strconv.Itoa(base+1), "SORTIE_SERVICE_PORT_BASE="+strconv.Itoa(base+2),
		"SORTIE_WORKSPACE_NAMESPACE="+p.namespace, "SORTIE_KEEP_CLUSTER=true",
	)
	p.cmd.Env = append(p.cmd.Env, cliEnv()...)
	if multiUser {
		file, err := p.writeUsers()
		if err != nil {
			return nil, err
		}
		p.cmd.Env = append(p.cmd.Env, "SORTIE_AUTH_USERS_FILE="+file)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = io.MultiWriter(p.log, pw), io.MultiWriter(p.log, pw)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("hack/run.sh: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Sortie is running") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); pw.Close() }()
	select {
	case <-ready:
	case err := <-p.exited:
		return p, fmt.Errorf("hack/run.sh exited before the platform was up: %v", err)
	case <-testwait.After(bound):
		return p, fmt.Errorf("the platform was not up within %v", testwait.Scaled(bound))
	}
	if !multiUser {
		pw, err := os.ReadFile(filepath.Join(state, "auth", "admin-password"))
		if err != nil {
			return p, err
		}
		p.password = strings.TrimSpace(string(pw))
	}
	if err := waitHTTP(p.url+"/healthz", time.Minute); err != nil {
		return p, err
	}
	return p, p.startNginx(base + 15) // base+2 .. base+14: the services (run.sh)
}

// userEntry is one user of the multi-user file auth reads.
type userEntry struct {
	ID           string `json:"id"`
	Username     string `json:"username"`
	PasswordHash string `json:"password_hash"`
	Role         string `json:"role"`
	Disabled     bool   `json:"disabled,omitempty"`
}

// writeUsers makes the multi-user file auth reads, with a random password
// per user.
func (p *platform) writeUsers() (string, error) {
	p.users = map[string]string{}
	p.entries = nil
	for _, u := range users {
		pw := rand.Text()
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return "", err
		}
		p.users[u.name] = pw
		p.entries = append(p.entries, userEntry{ID: u.id, Username: u.name, PasswordHash: string(hash), Role: u.role})
	}
	p.usersFile = filepath.Join(p.state, "users.json")
	return p.usersFile, p.saveUsers()
}

// changeUsers edits the users file the running auth service reads (as an
// operator would edit the Secret): change gets every entry and returns
// what the file should hold.
func (p *platform) changeUsers(change func([]userEntry) []userEntry) error {
	p.usersMu.Lock()
	defer p.usersMu.Unlock()
	p.entries = change(slices.Clone(p.entries))
	return p.saveUsers()
}

// saveUsers writes the file whole and renames it into place, so auth never
// reads half of it.
func (p *platform) saveUsers() error {
	data, err := json.Marshal(p.entries)
	if err != nil {
		return err
	}
	tmp := p.usersFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.usersFile)
}

// nginxConf is nginx set up the way ingress-nginx is by default: response
// buffering on (4k buffers), request buffering on, HTTP/1.1 upstream, a
// 60 s read timeout and a 1 MB body limit. Streams must get through it
// because Sortie says X-Accel-Buffering: no, not because of annotations.
const nginxConf = `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/nginx-error.log;
events { worker_connections 512; }
http {
  access_log %[1]s/logs/nginx-access.log;
  client_body_temp_path %[1]s/nginx/body;
  proxy_temp_path %[1]s/nginx/proxy;
  fastcgi_temp_path %[1]s/nginx/fastcgi;
  uwsgi_temp_path %[1]s/nginx/uwsgi;
  scgi_temp_path %[1]s/nginx/scgi;
  proxy_buffering on;
  proxy_buffer_size 4k;
  proxy_buffers 4 4k;
  proxy_request_buffering on;
  proxy_http_version 1.1;
  proxy_connect_timeout 5s;
  proxy_read_timeout 60s;
  proxy_send_timeout 60s;
  client_max_body_size 1m;
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Connection "";
      proxy_pass http://127.0.0.1:%[3]d;
    }
  }
}
`

func (p *platform) startNginx(port int) error {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("nginx is not installed (Debian: apt-get install nginx-light; make deps does it): the journeys behind nginx need it")
		}
	}
	// nginx's workers run as nobody when it is started as root: they must
	// reach their temporary folders (and nothing else) in the state folder.
	dir := filepath.Join(p.state, "nginx")
	if err := os.Chmod(p.state, 0o711); err != nil {
		return err
	}
	for _, sub := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dir, sub), 0o777); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, p.state, port, p.base)), 0o644); err != nil {
		return err
	}
	p.nginxCmd = exec.Command(bin, "-c", conf, "-p", dir, "-e", filepath.Join(p.state, "logs", "nginx-error.log"))
	p.nginxCmd.Stdout, p.nginxCmd.Stderr = p.log, p.log
	if err := p.nginxCmd.Start(); err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	p.nginx = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitHTTP(p.nginx+"/healthz", 30*time.Second)
}

func waitHTTP(url string, within time.Duration) error {
	err := testwait.Until(context.Background(), within, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	if err != nil {
		return fmt.Errorf("%s did not answer 200: %w", url, err)
	}
	return nil
}

// stop is Ctrl-C: run.sh stops everything it started.
func (p *platform) stop() {
	if p.nginxCmd != nil && p.nginxCmd.Process != nil {
		_ = p.nginxCmd.Process.Signal(syscall.SIGQUIT)
		_ = p.nginxCmd.Wait()
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.exited:
	case <-testwait.After(time.Minute):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	p.deleteNamespace()
}

// deleteNamespace removes the platform's workspace namespace and, with it,
// every Workspace, Pod and volume the journeys made there (the host
// runtime's among them): a run leaves nothing on the node. It does not
// wait; make test checks afterwards that the deletion finished.
func (p *platform) deleteNamespace() {
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(time.Minute))
	defer cancel()
	c, err := clustertest.Connect(ctx)
	if err == nil {
		err = c.Clientset.CoreV1().Namespaces().Delete(ctx, p.namespace, metav1.DeleteOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(os.Stderr, "e2e: delete namespace %s: %v\n", p.namespace, err)
	}
}

func (p *platform) dumpLog(w io.Writer) {
	fmt.Fprintf(w, "--- hack/run.sh output and service logs (state %s)\n", p.state)
	if b, err := os.ReadFile(filepath.Join(p.state, "run.log")); err == nil {
		w.Write(b)
	}
	logs, _ := filepath.Glob(filepath.Join(p.state, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(w, "--- %s (last %d lines)\n%s\n", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
	}
}
