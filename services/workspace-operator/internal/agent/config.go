package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the agent's configuration, read from SORTIE_AGENT_* variables.
type Config struct {
	Addr string // SORTIE_AGENT_ADDR
	// Token authenticates every /v1 call. From SORTIE_AGENT_TOKEN_FILE (a
	// mounted Secret; trailing newline trimmed) or SORTIE_AGENT_TOKEN.
	Token         string
	InitScript    string        // SORTIE_AGENT_INIT_SCRIPT; empty: none
	InitTimeout   time.Duration // SORTIE_AGENT_INIT_TIMEOUT
	Workdir       string        // SORTIE_AGENT_WORKDIR
	StateDir      string        // SORTIE_AGENT_STATE_DIR
	Roots         []string      // SORTIE_AGENT_ROOTS, comma-separated
	ExecMaxOutput int64         // SORTIE_AGENT_EXEC_MAX_OUTPUT, bytes per stream
	// ProcessMaxOutput is how much of a detached process's output is kept
	// on the volume (SORTIE_AGENT_PROCESS_MAX_OUTPUT): the oldest bytes
	// past it are dropped.
	ProcessMaxOutput int64
	Grace            time.Duration // SORTIE_AGENT_GRACE
	CgroupRoot       string        // SORTIE_AGENT_CGROUP_ROOT
	// Subreaper makes an agent that is not PID 1 adopt and reap orphans
	// (SORTIE_AGENT_SUBREAPER). PID 1 always reaps.
	Subreaper bool
	LogLevel  slog.Level // SORTIE_AGENT_LOG_LEVEL
}

// Defaults returns the configuration of an agent in a workspace Pod, less
// the token.
func Defaults() Config {
	return Config{
		Addr:             ":7070",
		InitTimeout:      30 * time.Minute,
		Workdir:          "/workspace",
		StateDir:         "/workspace/.sortie",
		Roots:            []string{"/workspace", "/tmp"},
		ExecMaxOutput:    10 << 20,
		ProcessMaxOutput: 256 << 20,
		Grace:            10 * time.Second,
		CgroupRoot:       "/sys/fs/cgroup",
		LogLevel:         slog.LevelInfo,
	}
}

// FromEnv reads the configuration through lookup (os.LookupEnv in main) on
// top of Defaults and validates it.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := Defaults()
	var errs []error
	str := func(key string, dst *string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v, ok := lookup(key); ok && v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				return
			}
			*dst = d
		}
	}
	str("SORTIE_AGENT_ADDR", &c.Addr)
	str("SORTIE_AGENT_INIT_SCRIPT", &c.InitScript)
	str("SORTIE_AGENT_WORKDIR", &c.Workdir)
	str("SORTIE_AGENT_STATE_DIR", &c.StateDir)
	str("SORTIE_AGENT_CGROUP_ROOT", &c.CgroupRoot)
	dur("SORTIE_AGENT_INIT_TIMEOUT", &c.InitTimeout)
	dur("SORTIE_AGENT_GRACE", &c.Grace)
	if v, ok := lookup("SORTIE_AGENT_ROOTS"); ok && v != "" {
		c.Roots = nil
		for r := range strings.SplitSeq(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				c.Roots = append(c.Roots, r)
			}
		}
	}
	size := func(key string, dst *int64) {
		if v, ok := lookup(key); ok && v != "" {
			n, err := parseBytes(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				return
			}
			*dst = n
		}
	}
	size("SORTIE_AGENT_EXEC_MAX_OUTPUT", &c.ExecMaxOutput)
	size("SORTIE_AGENT_PROCESS_MAX_OUTPUT", &c.ProcessMaxOutput)
	if v, ok := lookup("SORTIE_AGENT_SUBREAPER"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SORTIE_AGENT_SUBREAPER: %w", err))
		}
		c.Subreaper = b
	}
	if v, ok := lookup("SORTIE_AGENT_LOG_LEVEL"); ok && v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("SORTIE_AGENT_LOG_LEVEL: %w", err))
		}
	}
	if f, ok := lookup("SORTIE_AGENT_TOKEN_FILE"); ok && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("SORTIE_AGENT_TOKEN_FILE: %w", err))
		}
		c.Token = strings.TrimRight(string(b), "\r\n")
	} else if v, ok := lookup("SORTIE_AGENT_TOKEN"); ok {
		c.Token = v
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration. An agent without a token refuses to
// start: it would hand a shell to anyone who can reach the Pod.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Token) == "" {
		errs = append(errs, errors.New("no token: set SORTIE_AGENT_TOKEN_FILE or SORTIE_AGENT_TOKEN"))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("empty listen address"))
	}
	for name, p := range map[string]string{"workdir": c.Workdir, "state dir": c.StateDir} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q is not absolute", name, p))
		}
	}
	if len(c.Roots) == 0 {
		errs = append(errs, errors.New("no file roots"))
	}
	for _, r := range c.Roots {
		if !filepath.IsAbs(r) {
			errs = append(errs, fmt.Errorf("root %q is not absolute", r))
		}
	}
	// Exec output is held in memory (twice: stdout and stderr) until the
	// command ends.
	if c.ExecMaxOutput <= 0 || c.ExecMaxOutput > MaxExecOutput {
		errs = append(errs, fmt.Errorf("exec max output (SORTIE_AGENT_EXEC_MAX_OUTPUT) must be from 1 byte to %d MiB, not %d", MaxExecOutput>>20, c.ExecMaxOutput))
	}
	// Less than a MiB would drop output a follower has not read yet even
	// when it keeps up.
	if c.ProcessMaxOutput < 1<<20 {
		errs = append(errs, fmt.Errorf("process max output (SORTIE_AGENT_PROCESS_MAX_OUTPUT) must be at least 1Mi, not %d", c.ProcessMaxOutput))
	}
	if c.InitTimeout <= 0 || c.Grace < 0 {
		errs = append(errs, errors.New("init timeout must be positive and grace not negative"))
	}
	return errors.Join(errs...)
}

// parseBytes reads "10485760", "10Mi", "10M", "512Ki", "1Gi".
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid byte size %q", s)
	}
	return n * mult, nil
}

// MaxExecOutput is the largest SORTIE_AGENT_EXEC_MAX_OUTPUT.
const MaxExecOutput = 256 << 20
