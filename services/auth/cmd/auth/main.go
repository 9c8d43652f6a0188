// Command auth is Sortie's authentication service: logins, token
// verification, the public signing keys and service tokens.
//
//	auth [serve] [flags]           run the service (flags override SORTIE_* env vars)
//	auth hash-password [-cost N]   read a password on stdin, print its bcrypt hash
//	auth keys generate -dir DIR    add a new signing key to DIR (rotation)
//	auth version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"sortie.dev/services/auth/internal/config"
	"sortie.dev/services/auth/internal/keyring"
	"sortie.dev/services/auth/internal/service"
	"sortie.dev/services/auth/internal/users"
	"sortie.dev/services/kit/app"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/version"
)

func main() { app.Main("auth", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "hash-password":
		return hashPassword(args, os.Stdin, stdout)
	case "keys":
		return keys(args, stdout)
	case "version":
		fmt.Fprintln(stdout, version.String())
		return nil
	default:
		return app.UsageError{Msg: fmt.Sprintf("unknown command %q (want serve, hash-password, keys or version)", cmd)}
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, "auth", cfg.Level())
	log.Info("starting", "version", version.String())
	svc, err := service.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

func hashPassword(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (10-14)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cost < bcrypt.DefaultCost || *cost > 14 {
		return app.UsageError{Msg: "cost must be between 10 and 14"}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if len(password) < 8 {
		return app.UsageError{Msg: "give a password of at least 8 characters on standard input"}
	}
	hash, err := users.HashPassword(password, *cost)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, hash)
	return nil
}

func keys(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return app.UsageError{Msg: "usage: auth keys generate -dir DIR"}
	}
	fs := flag.NewFlagSet("keys generate", flag.ContinueOnError)
	dir := fs.String("dir", os.Getenv("SORTIE_AUTH_KEYS_DIR"), "keys folder")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return app.UsageError{Msg: "-dir is required"}
	}
	k, path, err := keyring.WriteNew(*dir, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (kid %s); running auth services pick it up at their next reload\n", path, k.ID)
	return nil
}
