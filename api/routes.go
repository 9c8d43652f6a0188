package api

import "strings"

// The services behind the ingress.
const (
	ServiceAuth              = "auth"
	ServiceMissionControl    = "mission-control"
	ServiceWorkspaceOperator = "workspace-operator"
	ServiceLibrary           = "library"
)

// Route sends every request whose path is Prefix or lies below it to
// Service. The Helm chart's Ingress and the local gateway (make run) are
// both made from Routes, and tests hold each to it.
type Route struct {
	Prefix  string
	Service string
}

// Routes is the one route table, most specific prefix first.
func Routes() []Route {
	return []Route{
		{"/api/auth", ServiceAuth},
		{"/api/control", ServiceMissionControl},
		{"/api/providers", ServiceMissionControl},
		{"/api/health", ServiceMissionControl},
		{"/api/workspaces", ServiceWorkspaceOperator},
		{"/api/stats", ServiceWorkspaceOperator},
		{"/api/library", ServiceLibrary},
	}
}

// Services lists the services of the route table, each once, in order.
func Services() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range Routes() {
		if !seen[r.Service] {
			seen[r.Service] = true
			out = append(out, r.Service)
		}
	}
	return out
}

// ServiceFor names the service that serves path: the route whose prefix is
// the path or one of its leading segments (so /api/authx is nobody's).
func ServiceFor(path string) (string, bool) {
	best, service := -1, ""
	for _, r := range Routes() {
		if (path == r.Prefix || strings.HasPrefix(path, r.Prefix+"/")) && len(r.Prefix) > best {
			best, service = len(r.Prefix), r.Service
		}
	}
	return service, best >= 0
}
