// Package config is the workspace-operator's configuration.
package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/config"
)

// Config is what the operator reads at start.
type Config struct {
	config.Server
	MetricsAddr    string
	ProbeAddr      string
	Namespace      string // where Workspaces and their Pods live
	LeaderElection bool
	AgentImage     string
	AgentPort      int
	DistroImages   map[v1alpha1.Distro]string
	DefaultDistro  v1alpha1.Distro
	StartTimeout   time.Duration
	DefaultStorage string
	HostStorage    string
	// Workload is how workspace Pods run: resources, capabilities,
	// RuntimeClasses.
	Workload Workload
	// ExecMaxOutput caps each of stdout and stderr of an exec as the REST
	// API passes it on (SORTIE_EXEC_MAX_OUTPUT), whatever the agent sends.
	ExecMaxOutput int64

	// The library service: templates and the skills synced into workspaces.
	LibraryURL       string
	LibraryConfigMap string
	// Service credentials for calling the library (not in dev mode).
	AuthURL          string
	ClientID         string
	ClientSecretFile string
	ImagePullPolicy  string

	AuthDevMode bool
	// AuthMode is the auth service's login mode: disabled, single_tenant
	// or multi_user. Multi-user mode gives every user a default host
	// workspace and host runtime of their own.
	AuthMode string
	JWKSURL  string
	// RedisURL, when set, is the auth service's Redis: tokens revoked by
	// logout are refused here too.
	RedisURL          string
	RedisPasswordFile string
	Issuer            string
	Audience          string
}

// Login modes (SORTIE_AUTH_MODE), as the auth service names them.
const (
	AuthDisabled     = "disabled"
	AuthSingleTenant = "single_tenant"
	AuthMultiUser    = "multi_user"
)

// MultiUser reports whether every user gets a default host workspace and
// host runtime of their own.
func (c *Config) MultiUser() bool { return c.AuthMode == AuthMultiUser }

// defaultDistroImages are public images per distro, for real clusters.
func defaultDistroImages() map[v1alpha1.Distro]string {
	return map[v1alpha1.Distro]string{
		v1alpha1.DistroUbuntuNoble:    "docker.io/library/ubuntu:24.04",
		v1alpha1.DistroUbuntuJammy:    "docker.io/library/ubuntu:22.04",
		v1alpha1.DistroDebianBookworm: "docker.io/library/debian:bookworm",
		v1alpha1.DistroArchLinux:      "docker.io/library/archlinux:latest",
	}
}

// Load binds env and flags and validates.
func Load(args []string, lookup config.LookupFunc) (*Config, error) {
	var c Config
	var distroImages string
	var defaultDistro string
	var execMaxOutput string
	b := config.NewBinder("workspace-operator", lookup)
	c.Server.Bind(b, "REST API address")
	b.String(&c.MetricsAddr, "metrics-listen", "SORTIE_METRICS_ADDR", ":8081", "controller metrics address")
	b.String(&c.ProbeAddr, "probe-listen", "SORTIE_PROBE_ADDR", ":8082", "controller health probe address")
	b.String(&c.Namespace, "namespace", "SORTIE_WORKSPACE_NAMESPACE", "sortie-workspaces", "namespace of Workspaces and their Pods")
	b.Bool(&c.LeaderElection, "leader-elect", "SORTIE_LEADER_ELECTION", true, "elect one active controller among replicas")
	b.String(&c.AgentImage, "agent-image", "SORTIE_AGENT_IMAGE", "localhost/sortie-workspace-agent:dev", "image holding the static workspace-agent binary")
	b.Int(&c.AgentPort, "agent-port", "SORTIE_AGENT_PORT", 7070, "port the workspace-agent serves on in each Pod")
	b.String(&distroImages, "distro-images", "SORTIE_DISTRO_IMAGES", "", "distro=image pairs overriding the defaults, comma-separated")
	b.String(&defaultDistro, "default-distro", "SORTIE_DEFAULT_DISTRO", string(v1alpha1.DistroUbuntuNoble), "distro of a container workspace that names none")
	b.Duration(&c.StartTimeout, "start-timeout", "SORTIE_WORKSPACE_START_TIMEOUT", 10*time.Minute, "a workspace not ready this long after its Pod was created fails")
	b.String(&c.DefaultStorage, "default-storage", "SORTIE_WORKSPACE_STORAGE", "10Gi", "volume size of a workspace that names none")
	b.String(&c.HostStorage, "host-storage", "SORTIE_HOST_STORAGE", "20Gi", "volume size of the host runtime, which holds every host workspace")
	finishWorkload := bindWorkload(b)
	b.String(&execMaxOutput, "exec-max-output", "SORTIE_EXEC_MAX_OUTPUT", "10Mi", "the most of each of stdout and stderr of an exec the REST API passes on, in bytes (10Mi, 1048576), from 1 byte to 256Mi")
	b.String(&c.ImagePullPolicy, "image-pull-policy", "SORTIE_IMAGE_PULL_POLICY", "IfNotPresent", "pull policy of workspace Pods")
	b.String(&c.LibraryURL, "library-url", "SORTIE_LIBRARY_URL", "", "the library service, e.g. http://library:8080; empty: no templates or skills sync")
	b.String(&c.LibraryConfigMap, "library-configmap", "SORTIE_LIBRARY_CONFIGMAP_NAME", "sortie-library-revision", "ConfigMap (in the workspace namespace) the library publishes its revision in")
	b.String(&c.AuthURL, "auth-url", "SORTIE_AUTH_URL", "", "the auth service, e.g. http://auth:8080, for service tokens")
	b.String(&c.ClientID, "client-id", "SORTIE_SERVICE_CLIENT_ID", "workspace-operator", "this service's client id at the auth service")
	b.String(&c.ClientSecretFile, "client-secret-file", "SORTIE_SERVICE_CLIENT_SECRET_FILE", "", "file holding this service's client secret")
	b.Bool(&c.AuthDevMode, "auth-dev-mode", "SORTIE_AUTH_DEV_MODE", false, "accept every request as the admin user dev (development only)")
	b.String(&c.AuthMode, "auth-mode", "SORTIE_AUTH_MODE", "", "the auth service's login mode: disabled, single_tenant or multi_user (a default host workspace and host runtime per user); default: disabled in dev mode, else single_tenant")
	b.String(&c.JWKSURL, "auth-jwks-url", "SORTIE_AUTH_JWKS_URL", "", "the auth service's public keys, e.g. http://auth:8080/api/auth/jwks")
	b.String(&c.RedisURL, "redis-url", "SORTIE_REDIS_URL", "", "the auth service's Redis, to refuse tokens revoked by logout; empty: revocation is not checked")
	b.String(&c.RedisPasswordFile, "redis-password-file", "SORTIE_REDIS_PASSWORD_FILE", "", "file holding the Redis password")
	b.String(&c.Issuer, "auth-issuer", "SORTIE_AUTH_ISSUER", "sortie-auth", "token issuer (iss)")
	b.String(&c.Audience, "auth-audience", "SORTIE_AUTH_AUDIENCE", "sortie", "token audience (aud)")
	if err := b.Parse(args); err != nil {
		return nil, err
	}
	var p config.Problems
	finishWorkload(&c.Workload, &p)
	p.Check(c.AuthDevMode || c.JWKSURL != "", "SORTIE_AUTH_JWKS_URL is required (the auth service's /api/auth/jwks), or SORTIE_AUTH_DEV_MODE=true on a development machine")
	switch c.AuthMode {
	case "":
		c.AuthMode = AuthSingleTenant
		if c.AuthDevMode {
			c.AuthMode = AuthDisabled
		}
	case AuthDisabled, AuthSingleTenant, AuthMultiUser:
	default:
		p.Addf("SORTIE_AUTH_MODE %q must be disabled, single_tenant or multi_user", c.AuthMode)
	}
	defaults := defaultDistroImages()
	c.DistroImages = defaultDistroImages()
	for _, pair := range config.SplitList(distroImages) {
		d, img, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(img) == "" {
			p.Addf("SORTIE_DISTRO_IMAGES: %q is not distro=image", pair)
			continue
		}
		d = strings.TrimSpace(d)
		if _, known := defaults[v1alpha1.Distro(d)]; !known {
			p.Addf("SORTIE_DISTRO_IMAGES: unknown distro %q (known: %s)", d, strings.Join(Distros(), ", "))
			continue
		}
		c.DistroImages[v1alpha1.Distro(d)] = strings.TrimSpace(img)
	}
	c.DefaultDistro = v1alpha1.Distro(defaultDistro)
	if _, ok := c.DistroImages[c.DefaultDistro]; !ok {
		p.Addf("SORTIE_DEFAULT_DISTRO: unknown distro %q", defaultDistro)
	}
	c.Server.Validate(&p)
	switch c.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		p.Addf("SORTIE_IMAGE_PULL_POLICY %q must be Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	p.Check(c.AgentImage != "", "SORTIE_AGENT_IMAGE must not be empty")
	p.Check(c.AgentPort > 0 && c.AgentPort < 65536, "SORTIE_AGENT_PORT must be a port number")
	p.Check(c.StartTimeout >= 10*time.Second, "SORTIE_WORKSPACE_START_TIMEOUT must be at least 10s")
	p.Check(c.Namespace != "", "SORTIE_WORKSPACE_NAMESPACE must not be empty")
	for env, q := range map[string]string{"SORTIE_WORKSPACE_STORAGE": c.DefaultStorage, "SORTIE_HOST_STORAGE": c.HostStorage} {
		if _, err := resource.ParseQuantity(q); err != nil {
			p.Addf("%s %q is not a quantity such as 10Gi", env, q)
		}
	}
	if q, err := v1alpha1.ParseAmount(execMaxOutput); err != nil || q.Sign() <= 0 || q.Cmp(*resource.NewQuantity(MaxExecOutput, resource.BinarySI)) > 0 {
		p.Addf("SORTIE_EXEC_MAX_OUTPUT %q must be a byte size from 1 to 256Mi, such as 10Mi", execMaxOutput)
	} else {
		c.ExecMaxOutput = q.Value()
	}
	if c.LibraryURL != "" && !c.AuthDevMode {
		p.Check(c.AuthURL != "" && c.ClientSecretFile != "", "SORTIE_LIBRARY_URL needs service credentials: SORTIE_AUTH_URL and SORTIE_SERVICE_CLIENT_SECRET_FILE (or SORTIE_AUTH_DEV_MODE=true)")
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// MaxExecOutput is the largest SORTIE_EXEC_MAX_OUTPUT, as the agent's
// SORTIE_AGENT_EXEC_MAX_OUTPUT: an exec's output is held in memory.
const MaxExecOutput = 256 << 20

// Distros lists the known distros, sorted.
func Distros() []string {
	var out []string
	for d := range defaultDistroImages() {
		out = append(out, string(d))
	}
	sort.Strings(out)
	return out
}

// ImageFor resolves a workspace's image: its own override, else its
// distro's (or the default distro's) mapped image.
func (c *Config) ImageFor(spec *v1alpha1.WorkspaceSpec) (string, error) {
	if spec.Image != "" {
		return spec.Image, nil
	}
	d := spec.Distro
	if d == "" {
		d = c.DefaultDistro
	}
	img, ok := c.DistroImages[d]
	if !ok {
		return "", fmt.Errorf("no image is configured for distro %q", d)
	}
	return img, nil
}

// Substitutions lists distros whose image is another distro's (the local
// cluster maps every distro it cannot build to its Debian image), so the
// operator can say so at start.
func (c *Config) Substitutions() map[string]string {
	out := map[string]string{}
	defaults := defaultDistroImages()
	for d, img := range c.DistroImages {
		if img != defaults[d] {
			out[string(d)] = img
		}
	}
	return out
}
