// Package config binds a service's typed configuration to environment
// variables and command-line flags, and collects validation problems so a
// service can report every one of them at start instead of the first.
//
// An environment variable supplies a flag's default; an explicit flag wins.
// That lets Kubernetes manifests use env vars while a developer overrides one
// value on the command line.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LookupFunc reads one environment variable; os.LookupEnv in production, a
// map in tests.
type LookupFunc func(key string) (string, bool)

// Binder registers flags whose defaults come from environment variables.
// Values that fail to parse are collected and returned by Parse, all at once.
type Binder struct {
	fs       *flag.FlagSet
	lookup   LookupFunc
	problems Problems
}

// NewBinder returns a Binder over a new FlagSet named name. A nil lookup
// means os.LookupEnv.
func NewBinder(name string, lookup LookupFunc) *Binder {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &Binder{fs: fs, lookup: lookup}
}

// FlagSet exposes the underlying flags, for usage output.
func (b *Binder) FlagSet() *flag.FlagSet { return b.fs }

func (b *Binder) env(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	v, ok := b.lookup(key)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(v), true
}

func usage(help, env string) string {
	if env == "" {
		return help
	}
	return fmt.Sprintf("%s (env %s)", help, env)
}

// String binds a string.
func (b *Binder) String(p *string, name, env, def, help string) {
	if v, ok := b.env(env); ok {
		def = v
	}
	b.fs.StringVar(p, name, def, usage(help, env))
}

// Bool binds a boolean; the env var accepts what strconv.ParseBool accepts.
func (b *Binder) Bool(p *bool, name, env string, def bool, help string) {
	if v, ok := b.env(env); ok && v != "" {
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			b.problems.Addf("%s: %q is not a boolean (use true or false)", env, v)
		} else {
			def = parsed
		}
	}
	b.fs.BoolVar(p, name, def, usage(help, env))
}

// Int binds an integer.
func (b *Binder) Int(p *int, name, env string, def int, help string) {
	if v, ok := b.env(env); ok && v != "" {
		parsed, err := strconv.Atoi(v)
		if err != nil {
			b.problems.Addf("%s: %q is not a whole number", env, v)
		} else {
			def = parsed
		}
	}
	b.fs.IntVar(p, name, def, usage(help, env))
}

// Duration binds a duration written as Go does ("30s", "720h").
func (b *Binder) Duration(p *time.Duration, name, env string, def time.Duration, help string) {
	if v, ok := b.env(env); ok && v != "" {
		parsed, err := time.ParseDuration(v)
		if err != nil {
			b.problems.Addf("%s: %q is not a duration (examples: 30s, 15m, 720h)", env, v)
		} else {
			def = parsed
		}
	}
	b.fs.DurationVar(p, name, def, usage(help, env))
}

// List binds a comma-separated list; empty items are dropped.
func (b *Binder) List(p *[]string, name, env string, def []string, help string) {
	if v, ok := b.env(env); ok {
		def = SplitList(v)
	}
	*p = def
	b.fs.Func(name, usage(help+" (comma-separated)", env), func(s string) error {
		*p = SplitList(s)
		return nil
	})
}

// Parse parses args (without the program name). It returns every problem
// found in the environment and the flags together.
func (b *Binder) Parse(args []string) error {
	if err := b.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		b.problems.Add(err.Error())
	}
	if b.fs.NArg() > 0 {
		b.problems.Addf("unexpected arguments: %s", strings.Join(b.fs.Args(), " "))
	}
	return b.problems.Err()
}

// SplitList splits a comma-separated value, trimming space and dropping
// empty items.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Problems collects configuration problems. The zero value is ready to use.
type Problems struct {
	list []string
}

// Add records one problem.
func (p *Problems) Add(msg string) { p.list = append(p.list, msg) }

// Addf records one formatted problem.
func (p *Problems) Addf(format string, args ...any) { p.Add(fmt.Sprintf(format, args...)) }

// Check records msg when ok is false.
func (p *Problems) Check(ok bool, msg string) {
	if !ok {
		p.Add(msg)
	}
}

// Merge appends the problems held by err, if it is an *Error, or err itself.
func (p *Problems) Merge(err error) {
	if err == nil {
		return
	}
	var ce *Error
	if errors.As(err, &ce) {
		p.list = append(p.list, ce.Problems...)
		return
	}
	p.Add(err.Error())
}

// Err returns nil when nothing was recorded, else an *Error listing all.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: append([]string(nil), p.list...)}
}

// Error is an invalid configuration: one line per problem.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// ReadSecretFile reads a file holding one secret value (a mounted Secret key)
// and trims the trailing newline editors and `echo` add.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
