package config

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/config"
)

// Workload is how workspace Pods run: their default and largest
// resources, the capabilities the workspace container keeps, and the
// RuntimeClasses they may use. Workspace Pods run untrusted code.
type Workload struct {
	// Requests and Limits are the defaults of what a workspace does not set.
	Requests, Limits corev1.ResourceList
	// Max bounds every request and limit a workspace or template asks for.
	Max corev1.ResourceList
	// Capabilities the workspace container keeps (all others are dropped):
	// what package installs as root inside it need.
	Capabilities []corev1.Capability
	// RuntimeClasses a workspace may name; empty: any.
	RuntimeClasses []string
	// RuntimeClass of a workspace that names none; empty: the cluster's default.
	RuntimeClass string
}

// Resources a workspace can ask for, in the order they are shown.
var workloadResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

// Defaults of the resource settings. Requests are small (an idle workspace
// waits on a model most of the time, and the local node must fit a hundred
// of them); limits keep one workspace from taking a node.
const (
	defaultRequests = "cpu=10m,memory=128Mi,ephemeral-storage=256Mi"
	defaultLimits   = "cpu=2,memory=4Gi,ephemeral-storage=10Gi"
	defaultMax      = "cpu=8,memory=16Gi,ephemeral-storage=50Gi"
)

// DefaultCapabilities are what a workspace needs as root, measured on the
// local node by dropping each in turn (docs: the report of issue 14):
// apt-get fails without SETUID and SETGID (it drops to _apt to download),
// CHOWN, DAC_OVERRIDE and FOWNER (its partial directories, maintainer
// scripts adding users and groups); without FSETID dpkg-statoverride
// silently loses setgid bits (crontab, plocate); without KILL the agent
// cannot signal a process that switched user (su, services), so a timeout
// or cancel could not stop it. SETPCAP, SETFCAP (setcap falls back to
// setuid), MKNOD, AUDIT_WRITE, SYS_CHROOT and NET_BIND_SERVICE were not
// needed.
var DefaultCapabilities = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"}

// baselineCapabilities are the capabilities Pod Security "baseline" lets a
// container add: more would keep workspace Pods out of a baseline namespace.
var baselineCapabilities = []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// bindWorkload registers the workload settings; finish parses them.
func bindWorkload(b *config.Binder) func(*Workload, *config.Problems) {
	var requests, limits, maxima, caps, classes, class string
	b.String(&requests, "workspace-requests", "SORTIE_WORKSPACE_REQUESTS", defaultRequests, "default resource requests of a workspace container (cpu, memory, ephemeral-storage as name=quantity pairs)")
	b.String(&limits, "workspace-limits", "SORTIE_WORKSPACE_LIMITS", defaultLimits, "default resource limits of a workspace container")
	b.String(&maxima, "workspace-max-resources", "SORTIE_WORKSPACE_MAX_RESOURCES", defaultMax, "the largest request or limit a workspace or template may ask for")
	b.String(&caps, "workspace-capabilities", "SORTIE_WORKSPACE_CAPABILITIES", joinCaps(DefaultCapabilities), "capabilities a workspace container keeps (all others are dropped); within Pod Security baseline")
	b.String(&classes, "workspace-runtime-classes", "SORTIE_WORKSPACE_RUNTIME_CLASSES", "", "RuntimeClasses a workspace may name, comma-separated; empty: any")
	b.String(&class, "workspace-runtime-class", "SORTIE_WORKSPACE_RUNTIME_CLASS", "", "RuntimeClass of a workspace that names none; empty: the cluster's default")
	return func(w *Workload, p *config.Problems) {
		w.Requests = parseResourceList(p, "SORTIE_WORKSPACE_REQUESTS", requests)
		w.Limits = parseResourceList(p, "SORTIE_WORKSPACE_LIMITS", limits)
		w.Max = parseResourceList(p, "SORTIE_WORKSPACE_MAX_RESOURCES", maxima)
		for _, r := range workloadResources {
			req, hasReq := w.Requests[r]
			lim, hasLim := w.Limits[r]
			max, hasMax := w.Max[r]
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				p.Addf("SORTIE_WORKSPACE_REQUESTS: %s=%s is above its limit %s (SORTIE_WORKSPACE_LIMITS)", r, req.String(), lim.String())
			}
			if !hasMax {
				continue
			}
			for _, d := range []struct {
				env string
				q   *resource.Quantity
			}{{"SORTIE_WORKSPACE_REQUESTS", ptrIf(req, hasReq)}, {"SORTIE_WORKSPACE_LIMITS", ptrIf(lim, hasLim)}} {
				if d.q != nil && d.q.Cmp(max) > 0 {
					p.Addf("%s: %s=%s is above its maximum %s (SORTIE_WORKSPACE_MAX_RESOURCES)", d.env, r, d.q.String(), max.String())
				}
			}
		}
		for _, c := range config.SplitList(caps) {
			c = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
			if !slices.Contains(baselineCapabilities, corev1.Capability(c)) {
				p.Addf("SORTIE_WORKSPACE_CAPABILITIES: %s is not one Pod Security baseline allows (%s)", c, joinCaps(baselineCapabilities))
				continue
			}
			if !slices.Contains(w.Capabilities, corev1.Capability(c)) {
				w.Capabilities = append(w.Capabilities, corev1.Capability(c))
			}
		}
		w.Capabilities = slices.Clip(w.Capabilities)
		for _, c := range config.SplitList(classes) {
			if err := runtimeClassName(c); err != nil {
				p.Addf("SORTIE_WORKSPACE_RUNTIME_CLASSES: %v", err)
				continue
			}
			w.RuntimeClasses = append(w.RuntimeClasses, c)
		}
		w.RuntimeClass = strings.TrimSpace(class)
		if w.RuntimeClass != "" {
			if err := runtimeClassName(w.RuntimeClass); err != nil {
				p.Addf("SORTIE_WORKSPACE_RUNTIME_CLASS: %v", err)
			} else if !w.RuntimeClassAllowed(w.RuntimeClass) {
				p.Addf("SORTIE_WORKSPACE_RUNTIME_CLASS: %q is not in SORTIE_WORKSPACE_RUNTIME_CLASSES", w.RuntimeClass)
			}
		}
	}
}

func ptrIf(q resource.Quantity, ok bool) *resource.Quantity {
	if !ok {
		return nil
	}
	return &q
}

func joinCaps(caps []corev1.Capability) string {
	s := make([]string, len(caps))
	for i, c := range caps {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

// parseResourceList reads "cpu=2,memory=4Gi,ephemeral-storage=10Gi": only
// the resources a workspace can ask for, each positive, each once.
func parseResourceList(p *config.Problems, env, s string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, pair := range config.SplitList(s) {
		name, value, ok := strings.Cut(pair, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		r := corev1.ResourceName(name)
		switch {
		case !ok:
			p.Addf("%s: %q is not name=quantity", env, pair)
			continue
		case !slices.Contains(workloadResources, r):
			p.Addf("%s: %q is not cpu, memory or ephemeral-storage", env, name)
			continue
		}
		if _, dup := out[r]; dup {
			p.Addf("%s: %s is given twice", env, name)
			continue
		}
		q, err := v1alpha1.ParseAmount(value)
		if err != nil {
			p.Addf("%s: %s=%q is %v", env, name, value, err)
			continue
		}
		if q.Sign() <= 0 {
			p.Addf("%s: %s=%q is not a positive quantity such as 500m or 4Gi", env, name, value)
			continue
		}
		out[r] = q
	}
	return out
}

// RuntimeClassAllowed reports whether a workspace may run under name.
func (w *Workload) RuntimeClassAllowed(name string) bool {
	return len(w.RuntimeClasses) == 0 || slices.Contains(w.RuntimeClasses, name)
}

// RuntimeClassFor is the RuntimeClass of a workspace that names name: the
// default (checked at start) when it names none; an error when name is
// not a RuntimeClass name or not one the operator allows.
func (w *Workload) RuntimeClassFor(name string) (string, error) {
	if name == "" {
		return w.RuntimeClass, nil
	}
	if err := runtimeClassName(name); err != nil {
		return "", err
	}
	if !w.RuntimeClassAllowed(name) {
		return "", fmt.Errorf("the RuntimeClass %q is not one the operator allows (%s)", name, strings.Join(w.RuntimeClasses, ", "))
	}
	return name, nil
}

// runtimeClassName refuses a name that is not a RuntimeClass's (a DNS label).
func runtimeClassName(name string) error {
	if len(validation.IsDNS1123Label(name)) > 0 {
		return fmt.Errorf("%q is not a RuntimeClass name (a DNS label)", name)
	}
	return nil
}

// ResourceError says why a workspace's resources cannot be given: the
// user's to fix (the REST API answers 400, the controller InvalidSpec).
type ResourceError struct {
	Msg string
	// AboveMax: a request or limit is above the operator's maximum.
	AboveMax bool
}

func (e *ResourceError) Error() string { return e.Msg }

func resourceErrorf(format string, args ...any) error {
	return &ResourceError{Msg: fmt.Sprintf(format, args...)}
}

// Resources resolves a workspace container's requests and limits: what
// the workspace sets, over the defaults. A request above the default limit
// lifts that limit to it; a limit below the default request lowers that
// request to it, so setting one alone always works. Anything above the
// maxima is an error.
func (w *Workload) Resources(spec *v1alpha1.WorkspaceResources) (corev1.ResourceRequirements, error) {
	var setReq, setLim *v1alpha1.ResourceAmounts
	if spec != nil {
		setReq, setLim = spec.Requests, spec.Limits
	}
	out := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, r := range workloadResources {
		req, hasReq := w.Requests[r]
		lim, hasLim := w.Limits[r]
		ownReq, ownLim := amount(setReq, r), amount(setLim, r)
		for _, own := range []*resource.Quantity{ownReq, ownLim} {
			if own != nil && own.Sign() <= 0 {
				return out, resourceErrorf("%s must be positive, not %s", r, own.String())
			}
		}
		if ownReq != nil {
			req, hasReq = *ownReq, true
		}
		if ownLim != nil {
			lim, hasLim = *ownLim, true
		}
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			switch {
			case ownReq != nil && ownLim != nil:
				return out, resourceErrorf("the %s request %s is above its limit %s", r, req.String(), lim.String())
			case ownReq != nil:
				lim = req
			default:
				req = lim
			}
		}
		if max, ok := w.Max[r]; ok {
			for _, d := range []struct {
				what string
				q    *resource.Quantity
			}{{"request", ptrIf(req, hasReq)}, {"limit", ptrIf(lim, hasLim)}} {
				if d.q != nil && d.q.Cmp(max) > 0 {
					return out, &ResourceError{AboveMax: true,
						Msg: fmt.Sprintf("the %s %s %s is above the maximum %s", r, d.what, d.q.String(), max.String())}
				}
			}
		}
		if hasReq {
			out.Requests[r] = req
		}
		if hasLim {
			out.Limits[r] = lim
		}
	}
	return out, nil
}

// amount is a's amount of r, nil when it sets none.
func amount(a *v1alpha1.ResourceAmounts, r corev1.ResourceName) *resource.Quantity {
	if a == nil {
		return nil
	}
	var q *resource.Quantity
	switch r {
	case corev1.ResourceCPU:
		q = a.CPU
	case corev1.ResourceMemory:
		q = a.Memory
	case corev1.ResourceEphemeralStorage:
		q = a.EphemeralStorage
	}
	return q
}
