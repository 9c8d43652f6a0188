// Command library is Sortie's library service: the git-backed store of
// skills, commands, rules, agents, MCP servers, workspace templates, tools
// and init scripts.
//
//	library [serve] [flags]   run the service (flags override SORTIE_* env vars)
//	library version
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
	"sortie.dev/services/library/internal/config"
	"sortie.dev/services/library/internal/service"
)

func main() { app.Main("library", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "version":
		fmt.Fprintln(stdout, version.String())
		return nil
	default:
		return app.UsageError{Msg: fmt.Sprintf("unknown command %q (want serve or version)", cmd)}
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, "library", cfg.Level())
	log.Info("starting", "version", version.String())
	svc, err := service.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
