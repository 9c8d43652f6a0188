// Command mission-control runs AI coding agents' missions: it keeps
// missions, events and queues in Redis, runs each turn's agent CLI in the
// mission's workspace through the workspace-operator, and streams events
// to clients over SSE.
//
//	mission-control [serve] [flags]   run the service (flags override SORTIE_* env vars)
//	mission-control version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"sortie.dev/services/kit/app"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/version"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/service"
)

func main() { app.Main("mission-control", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := config.Load(args, os.LookupEnv)
		if err != nil {
			return err
		}
		log := logging.New(stderr, "mission-control", cfg.Level())
		log.Info("starting", "version", version.String(), "workspaces", cfg.WorkspacesURL)
		svc, err := service.New(ctx, cfg, log)
		if err != nil {
			return err
		}
		return svc.Run(ctx)
	case "version":
		fmt.Fprintln(stdout, version.String())
		return nil
	default:
		return app.UsageError{Msg: fmt.Sprintf("unknown command %q (want serve or version)", cmd)}
	}
}
