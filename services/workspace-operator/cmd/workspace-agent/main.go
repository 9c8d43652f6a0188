// Command workspace-agent runs as PID 1 in every workspace Pod and serves
// the workspace-operator's exec, process, file, init and stats API.
//
// Configuration is from the environment (SORTIE_AGENT_*); see agent.Config.
//
//	workspace-agent                serve
//	workspace-agent install DEST   copy this binary to DEST (the Pod's init
//	                               container puts it where the distro image runs it)
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"sortie.dev/services/workspace-operator/internal/agent"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: workspace-agent install DEST")
			os.Exit(2)
		}
		if err := install(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "workspace-agent install:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.LookupEnv); err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("workspace-agent failed", "err", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT and returns nil after a clean shutdown,
// so that the container exits 0.
func run(lookup func(string) (string, bool)) error {
	cfg, err := agent.FromEnv(lookup)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// install copies the running binary to dest atomically. The agent image has
// no shell or cp: the binary installs itself.
func install(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".install-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
