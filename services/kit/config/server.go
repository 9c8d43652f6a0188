package config

import (
	"log/slog"
	"net/netip"

	"sortie.dev/services/kit/logging"
)

// Server holds the settings every Sortie HTTP service shares. Embed it in
// a service's Config; bind it with Bind and check it with Validate.
type Server struct {
	ListenAddr     string
	LogLevel       string
	CORSOrigins    []string
	TrustedProxies []string
}

// Bind registers the shared settings under their common names
// (SORTIE_LISTEN_ADDR, SORTIE_LOG_LEVEL, SORTIE_CORS_ORIGINS,
// SORTIE_TRUSTED_PROXIES).
func (s *Server) Bind(b *Binder, listenHelp string) {
	b.String(&s.ListenAddr, "listen", "SORTIE_LISTEN_ADDR", ":8080", listenHelp)
	b.String(&s.LogLevel, "log-level", "SORTIE_LOG_LEVEL", "info", "debug, info, warn or error")
	b.List(&s.CORSOrigins, "cors-origins", "SORTIE_CORS_ORIGINS", nil, "browser origins allowed to call the API")
	b.List(&s.TrustedProxies, "trusted-proxies", "SORTIE_TRUSTED_PROXIES", nil, "CIDRs of proxies whose X-Forwarded-For is trusted")
}

// Validate records the shared settings' problems.
func (s *Server) Validate(p *Problems) {
	p.Check(s.ListenAddr != "", "SORTIE_LISTEN_ADDR must not be empty")
	if _, err := logging.ParseLevel(s.LogLevel); err != nil {
		p.Add(err.Error())
	}
	s.validateProxies(p)
}

// validateProxies refuses a trusted proxy that is not an address or a
// CIDR. Trusting too much is the dangerous mistake, so a typo must stop the
// start rather than be skipped: every client behind a proxy would look
// like the proxy's address, or anyone could choose their own.
func (s *Server) validateProxies(p *Problems) {
	for _, proxy := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(proxy); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(proxy); err == nil {
			continue
		}
		p.Addf("SORTIE_TRUSTED_PROXIES: %q is not an IP address or CIDR (e.g. 127.0.0.1 or 10.0.0.0/8)", proxy)
	}
}

// Level is the parsed log level (valid after Validate).
func (s *Server) Level() slog.Level {
	l, _ := logging.ParseLevel(s.LogLevel)
	return l
}
