package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/config"
)

// capMask is the bit mask /proc/<pid>/status shows for caps.
func capMask(caps []corev1.Capability) uint64 {
	bits := map[corev1.Capability]uint{"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
		"SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "MKNOD": 27,
		"AUDIT_WRITE": 29, "SETFCAP": 31}
	var m uint64
	for _, c := range caps {
		m |= 1 << bits[c]
	}
	return m
}

// probeDeb builds and installs, offline, a package whose maintainer script
// does what real packages do as root: a system group and user with a home,
// a file handed to that user, and a setgid binary through
// dpkg-statoverride (chmod, then chown: the setgid bit survives only with
// FSETID). Then apt-get installs the same package file, as users do.
const probeDeb = `set -e
rm -rf /tmp/p && mkdir -p /tmp/p/DEBIAN /tmp/p/usr/local/bin
printf 'Package: sortie-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: Sortie <t@sortie.dev>\nDescription: probe\n' >/tmp/p/DEBIAN/control
printf '#!/bin/sh\nset -e\ngetent group probe >/dev/null || groupadd -r probe\ngetent passwd probe >/dev/null || useradd -r -g probe -d /var/lib/probe -m probe\ninstall -d -o probe -g probe -m 0750 /var/lib/probe/data\ndpkg-statoverride --list /usr/local/bin/probe >/dev/null || dpkg-statoverride --update --add root probe 2755 /usr/local/bin/probe\n' >/tmp/p/DEBIAN/postinst
printf '#!/bin/sh\necho probe ran\n' >/tmp/p/usr/local/bin/probe
chmod 0755 /tmp/p/DEBIAN/postinst /tmp/p/usr/local/bin/probe
dpkg-deb --build /tmp/p /tmp/sortie-probe.deb >/dev/null
dpkg -i /tmp/sortie-probe.deb >/dev/null
stat -c '%A %U:%G' /usr/local/bin/probe /var/lib/probe/data
dpkg -r sortie-probe >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/sortie-probe.deb >/dev/null 2>&1
probe
dpkg --audit
`

// TestHardenedOnNode: on the real node, in a namespace enforcing Pod
// Security baseline, a container workspace and the host runtime run with
// the measured capability set, no new privileges, seccomp and cgroup
// limits; package installs as root work; and an env var of the workspace
// does not move the agent's file roots.
func TestHardenedOnNode(t *testing.T) {
	n := startOnNode(t)
	ctx := context.Background()
	ns := &corev1.Namespace{}
	if err := n.client.Get(ctx, client.ObjectKey{Name: n.ns}, ns); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"enforce", "warn", "audit"} {
		ns.Labels["pod-security.kubernetes.io/"+mode] = "baseline"
	}
	if err := n.client.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	ws := nodeWS(n.ns, "hardened", "")
	ws.Spec.EnvVars = map[string]string{"SORTIE_AGENT_ROOTS": "/", "SORTIE_AGENT_ADDR": ":1", "PROJECT": "hardened"}
	if err := n.client.Create(ctx, ws); err != nil {
		t.Fatal(err)
	}
	host := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "dir", Namespace: n.ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "dir", Path: "/workspaces/dir"}}
	if err := n.client.Create(ctx, host); err != nil {
		t.Fatal(err)
	}
	n.waitPhase(t, "hardened", v1alpha1.PhaseReady, 2*time.Minute)
	n.waitPhase(t, "dir", v1alpha1.PhaseReady, 2*time.Minute)

	want := capMask(config.DefaultCapabilities)
	for _, name := range []string{"hardened", "dir"} {
		var a *agentapi.Client
		if name == "dir" {
			a = n.runtimeAgent(t)
		} else {
			a = n.agent(t, name)
		}
		res, err := a.Exec(ctx, agentapi.ExecRequest{Command: "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/1/status /proc/self/status; " +
			"cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max"})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v", name, res, err)
		}
		t.Logf("%s:\n%s", name, res.Stdout)
		for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
			_, kv, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			key, val, _ := strings.Cut(kv, ":")
			val = strings.TrimSpace(val)
			switch key {
			case "CapEff", "CapBnd", "CapPrm":
				if m, err := strconv.ParseUint(val, 16, 64); err != nil || m != want {
					t.Errorf("%s: %s %s, want %016x (%v)", name, line, val, want, config.DefaultCapabilities)
				}
			case "NoNewPrivs":
				if val != "1" {
					t.Errorf("%s: %s: privileges can be gained", name, line)
				}
			case "Seccomp":
				if val != "2" {
					t.Errorf("%s: %s: no seccomp filter", name, line)
				}
			}
		}
		// cgroup v1 (this node) or v2: the 4Gi memory and 2-CPU limits.
		if !strings.Contains(res.Stdout, fmt.Sprint(4<<30)) || !(strings.Contains(res.Stdout, "\n200000") || strings.Contains(res.Stdout, "200000 100000")) {
			t.Errorf("%s: the limits are not in the cgroup:\n%s", name, res.Stdout)
		}
	}

	a := n.agent(t, "hardened")
	res, err := a.Exec(ctx, agentapi.ExecRequest{Command: probeDeb, TimeoutSecs: 120})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "-rwxr-sr-x root:probe") || !strings.Contains(res.Stdout, "drwxr-x--- probe:probe") ||
		!strings.Contains(res.Stdout, "probe ran") {
		t.Errorf("a package install as root: exit %d\nstdout %s\nstderr %s", res.ExitCode, res.Stdout, res.Stderr)
	}
	// The agent's file roots are its own: /etc is not one of them.
	if body, err := a.GetFile(ctx, "/etc/passwd", 1<<20); err == nil {
		body.Close()
		t.Error("the agent served /etc/passwd: a workspace env var widened its roots")
	}
}

// runtimeAgent is a client for the single-user host runtime's agent.
func (n *nodeEnv) runtimeAgent(t *testing.T) *agentapi.Client {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{}
	if err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: HostRuntimeName + "-pod"}, pod); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{}
	if err := n.client.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: HostRuntimeName + "-agent"}, sec); err != nil {
		t.Fatal(err)
	}
	return agentapi.NewClient(fmt.Sprintf("http://%s:7070", pod.Status.PodIP), string(sec.Data["token"]), nil)
}
