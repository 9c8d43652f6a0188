package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type testConfig struct {
	Addr    string
	Debug   bool
	Workers int
	TTL     time.Duration
	Origins []string
}

func bind(env map[string]string) (*Binder, *testConfig) {
	var c testConfig
	b := NewBinder("test", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	b.String(&c.Addr, "addr", "T_ADDR", ":8080", "listen address")
	b.Bool(&c.Debug, "debug", "T_DEBUG", false, "debug")
	b.Int(&c.Workers, "workers", "T_WORKERS", 4, "workers")
	b.Duration(&c.TTL, "ttl", "T_TTL", time.Hour, "ttl")
	b.List(&c.Origins, "origins", "T_ORIGINS", nil, "origins")
	return b, &c
}

func TestBinderPrecedence(t *testing.T) {
	tests := map[string]struct {
		env  map[string]string
		args []string
		want testConfig
	}{
		"defaults": {
			want: testConfig{Addr: ":8080", Workers: 4, TTL: time.Hour},
		},
		"env overrides defaults": {
			env:  map[string]string{"T_ADDR": " :9000 ", "T_DEBUG": "true", "T_WORKERS": "8", "T_TTL": "30m", "T_ORIGINS": "https://a, ,https://b"},
			want: testConfig{Addr: ":9000", Debug: true, Workers: 8, TTL: 30 * time.Minute, Origins: []string{"https://a", "https://b"}},
		},
		"flags override env": {
			env:  map[string]string{"T_ADDR": ":9000", "T_WORKERS": "8", "T_ORIGINS": "https://a"},
			args: []string{"-addr=:7000", "-workers=2", "-origins=https://c"},
			want: testConfig{Addr: ":7000", Workers: 2, TTL: time.Hour, Origins: []string{"https://c"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, got := bind(tc.env)
			if err := b.Parse(tc.args); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("config mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBinderReportsEveryProblem(t *testing.T) {
	b, _ := bind(map[string]string{"T_DEBUG": "yes please", "T_WORKERS": "many", "T_TTL": "forever"})
	err := b.Parse([]string{"extra"})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error = %v, want *Error", err)
	}
	if len(ce.Problems) != 4 {
		t.Fatalf("got %d problems, want 4: %v", len(ce.Problems), ce.Problems)
	}
	for _, want := range []string{"T_DEBUG", "T_WORKERS", "T_TTL", "unexpected arguments: extra"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("empty Problems must give a nil error")
	}
	p.Check(true, "not recorded")
	p.Check(false, "first")
	p.Merge(&Error{Problems: []string{"second", "third"}})
	p.Merge(errors.New("fourth"))
	want := "invalid configuration:\n  - first\n  - second\n  - third\n  - fourth"
	if got := p.Err().Error(); got != want {
		t.Errorf("Err() = %q, want %q", got, want)
	}
}

func TestServerSettings(t *testing.T) {
	env := map[string]string{"SORTIE_LISTEN_ADDR": ":9000", "SORTIE_LOG_LEVEL": "debug", "SORTIE_CORS_ORIGINS": "https://a"}
	var s Server
	b := NewBinder("test", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	s.Bind(b, "listen address")
	if err := b.Parse([]string{"-trusted-proxies=10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	var p Problems
	s.Validate(&p)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	want := Server{ListenAddr: ":9000", LogLevel: "debug", CORSOrigins: []string{"https://a"}, TrustedProxies: []string{"10.0.0.0/8"}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if s.Level().String() != "DEBUG" {
		t.Errorf("Level = %v", s.Level())
	}
	bad := Server{LogLevel: "loud"}
	var q Problems
	bad.Validate(&q)
	if err := q.Err(); err == nil || len(err.(*Error).Problems) != 2 {
		t.Errorf("an empty address and a bad level must both be reported: %v", err)
	}
	proxies := Server{ListenAddr: ":1", LogLevel: "info", TrustedProxies: []string{"10.0.0.0/8", "::1", "ingress-nginx", "10.0.0.0/33", "*"}}
	var r Problems
	proxies.Validate(&r)
	if err := r.Err(); err == nil || len(err.(*Error).Problems) != 3 {
		t.Errorf("each trusted proxy that is not an address or CIDR must be reported: %v", err)
	}
}
