package items

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/library/internal/secrets"
)

// Distros a template may name, as the workspace API accepts them.
var distros = []string{"ubuntu-noble", "ubuntu-jammy", "debian-bookworm", "arch-linux"}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// templateFile is a workspace template as stored in
// workspace-template/<name>.json.
type templateFile struct {
	Name          string            `json:"name,omitempty"`
	Description   string            `json:"description,omitempty"`
	Distro        string            `json:"distro,omitempty"`
	Skills        []string          `json:"skills"`
	EnvVars       map[string]string `json:"env_vars"`
	EncryptedKeys []string          `json:"encrypted_keys"`
	InitScripts   []string          `json:"init_scripts"`
	InitScript    string            `json:"init_script"`
	SharedNetwork *bool             `json:"shared_network,omitempty"`
	TailscaleMode string            `json:"tailscale_mode,omitempty"`
	MCPs          []string          `json:"mcps"`
	ConfigProfile string            `json:"config_profile,omitempty"`
	// Resources and RuntimeClassName are for the workspace operator: the
	// template's workspaces' requests and limits, and their RuntimeClass.
	Resources        *TemplateResources `json:"resources,omitempty"`
	RuntimeClassName string             `json:"runtime_class_name,omitempty"`
}

// TemplateResources are a template's requests and limits of cpu, memory
// and ephemeral-storage, as Kubernetes quantities ("2", "4Gi"). The
// operator checks them against its maxima when a workspace is made.
type TemplateResources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// templateResourceNames are the resources a template may set.
var templateResourceNames = []string{"cpu", "memory", "ephemeral-storage"}

func validTemplateResources(r *TemplateResources) error {
	if r == nil {
		return nil
	}
	for kind, m := range map[string]map[string]string{"requests": r.Requests, "limits": r.Limits} {
		for name, q := range m {
			if !slices.Contains(templateResourceNames, name) {
				return invalidf(CodeInvalidTemplate, "resources.%s: %q is not cpu, memory or ephemeral-storage", kind, name)
			}
			// The operator checks them against its maxima; the library keeps
			// what is not a positive plain quantity (as the Workspace CRD
			// takes it) out of the repository.
			if v, err := v1alpha1.ParseAmount(q); err != nil || v.Sign() <= 0 {
				return invalidf(CodeInvalidTemplate, "resources.%s.%s: %q is not a positive quantity such as 500m or 4Gi (no sign, no exponent)", kind, name, q)
			}
		}
	}
	return nil
}

// TemplateRequest is the body of a template save. name and path are
// accepted (clients send the object they read) and ignored.
type TemplateRequest struct {
	Name          string            `json:"name"`
	Path          string            `json:"path"`
	Description   string            `json:"description"`
	Distro        string            `json:"distro"`
	Skills        []string          `json:"skills"`
	EnvVars       map[string]string `json:"env_vars"`
	EncryptedKeys []string          `json:"encrypted_keys"`
	InitScripts   []string          `json:"init_scripts"`
	InitScript    string            `json:"init_script"`
	SharedNetwork *bool             `json:"shared_network"`
	TailscaleMode string            `json:"tailscale_mode"`
	MCPs          []string          `json:"mcps"`
	ConfigProfile string            `json:"config_profile"`
	// Resources and RuntimeClassName of the template's workspaces.
	Resources        *TemplateResources `json:"resources"`
	RuntimeClassName string             `json:"runtime_class_name"`
}

// TemplateSummary is a template in a list.
type TemplateSummary struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Path        string   `json:"path"`
	Distro      string   `json:"distro,omitempty"`
	Skills      []string `json:"skills"`
	InitScripts []string `json:"init_scripts"`
}

// TemplateItem is a whole template; env values listed in encrypted_keys
// are opened for the editor.
type TemplateItem struct {
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	Path          string            `json:"path"`
	Distro        string            `json:"distro,omitempty"`
	Skills        []string          `json:"skills"`
	EnvVars       map[string]string `json:"env_vars"`
	EncryptedKeys []string          `json:"encrypted_keys"`
	InitScripts   []string          `json:"init_scripts"`
	InitScript    string            `json:"init_script"`
	SharedNetwork *bool             `json:"shared_network,omitempty"`
	TailscaleMode string            `json:"tailscale_mode,omitempty"`
	MCPs          []string          `json:"mcps"`
	ConfigProfile string            `json:"config_profile,omitempty"`
	// Resources and RuntimeClassName of the template's workspaces.
	Resources        *TemplateResources `json:"resources,omitempty"`
	RuntimeClassName string             `json:"runtime_class_name,omitempty"`
}

func parseTemplate(data []byte) (templateFile, error) {
	var t templateFile
	if err := json.Unmarshal(data, &t); err != nil {
		return t, err
	}
	t.normalise()
	return t, nil
}

func (t *templateFile) normalise() {
	if t.Skills == nil {
		t.Skills = []string{}
	}
	if t.EnvVars == nil {
		t.EnvVars = map[string]string{}
	}
	if t.EncryptedKeys == nil {
		t.EncryptedKeys = []string{}
	}
	if t.InitScripts == nil {
		t.InitScripts = []string{}
	}
	if t.MCPs == nil {
		t.MCPs = []string{}
	}
}

func templateSummary(name string, data []byte, v View) TemplateSummary {
	t, _ := parseTemplate(data) // a broken file still lists by name
	return TemplateSummary{Name: name, Description: v.text(t.Description), Path: File(Template, name),
		Distro: v.text(t.Distro), Skills: v.texts(t.Skills), InitScripts: v.texts(t.InitScripts)}
}

func getTemplate(name string, data []byte, v View) (TemplateItem, error) {
	t, err := parseTemplate(data)
	if err != nil {
		// encoding/json's errors name a type or one character, never a value.
		return TemplateItem{}, invalidf(CodeInvalidStoredItem, "the stored template %s is not valid JSON (%v); save it again or delete it", File(Template, name), err)
	}
	return TemplateItem{
		Name: name, Description: v.text(t.Description), Path: File(Template, name), Distro: v.text(t.Distro),
		Skills: v.texts(t.Skills), EnvVars: v.env(t.EnvVars, t.EncryptedKeys), EncryptedKeys: t.EncryptedKeys,
		InitScripts: v.texts(t.InitScripts), InitScript: v.text(t.InitScript), SharedNetwork: t.SharedNetwork,
		TailscaleMode: v.text(t.TailscaleMode), MCPs: v.texts(t.MCPs), ConfigProfile: v.text(t.ConfigProfile),
		Resources: t.Resources, RuntimeClassName: t.RuntimeClassName,
	}, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields: a
// misspelt template field would otherwise be dropped without a word.
func decodeStrict(body []byte, v any, code string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidf(code, "the body is not a valid object: %v", err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return invalid(code, "the body must hold a single JSON object")
	}
	return nil
}

func prepareTemplate(fsys fs.FS, name string, body []byte, v View) (Change, error) {
	var req TemplateRequest
	if err := decodeStrict(body, &req, CodeInvalidTemplate); err != nil {
		return Change{}, err
	}
	if req.Distro != "" && !slices.Contains(distros, req.Distro) {
		return Change{}, invalidf(CodeInvalidTemplate, "distro %q is not one of %v", req.Distro, distros)
	}
	for _, list := range [][]string{req.Skills, req.InitScripts, req.MCPs} {
		for _, n := range list {
			if err := ValidName(n); err != nil {
				return Change{}, invalidf(CodeInvalidTemplate, "the template names an invalid item: %v", err)
			}
		}
	}
	if err := validTemplateResources(req.Resources); err != nil {
		return Change{}, err
	}
	if req.RuntimeClassName != "" && len(validation.IsDNS1123Label(req.RuntimeClassName)) > 0 {
		return Change{}, invalidf(CodeInvalidTemplate, "runtime_class_name: %q is not a RuntimeClass name (a DNS label)", req.RuntimeClassName)
	}
	for k := range req.EnvVars {
		if !envName.MatchString(k) {
			return Change{}, invalidf(CodeInvalidTemplate, "env_vars: %q is not a valid variable name", k)
		}
	}
	for _, k := range req.EncryptedKeys {
		if !envName.MatchString(k) {
			return Change{}, invalidf(CodeInvalidTemplate, "encrypted_keys: %q is not a valid variable name", k)
		}
	}
	t := templateFile{
		Name: name, Description: req.Description, Distro: req.Distro, Skills: req.Skills,
		EnvVars: req.EnvVars, EncryptedKeys: req.EncryptedKeys, InitScripts: req.InitScripts,
		InitScript: req.InitScript, SharedNetwork: req.SharedNetwork, TailscaleMode: req.TailscaleMode,
		MCPs: req.MCPs, ConfigProfile: req.ConfigProfile, Resources: req.Resources, RuntimeClassName: req.RuntimeClassName,
	}
	t.normalise()
	var previous templateFile
	if data, err := fs.ReadFile(fsys, File(Template, name)); err == nil {
		previous, _ = parseTemplate(data)
	}
	// A value saved back as the placeholder keeps the stored secret.
	env, err := secrets.RestoreEnv(t.EnvVars, previous.EnvVars)
	var varErr *secrets.VarError
	if errors.As(err, &varErr) {
		return Change{}, invalidf(CodeInvalidTemplate, "env_vars: %s is %s, which keeps the stored secret, but the stored template has no value for %s; write the value itself", varErr.Name, secrets.Placeholder, varErr.Name)
	}
	if err != nil {
		return Change{}, err
	}
	t.EnvVars = env
	if t.InitScript, err = sealString(t.InitScript, previous.InitScript, v); err != nil {
		return Change{}, err
	}
	if len(t.EncryptedKeys) > 0 {
		sealer := v.Sealer
		needed := false
		for _, k := range t.EncryptedKeys {
			_, needed = t.EnvVars[k]
			if needed {
				break
			}
		}
		if needed && !sealer.Enabled() {
			return Change{}, invalid(CodeEncryptionDisabled, "the template has encrypted_keys but "+secrets.ErrNoKey.Error())
		}
		env, err := sealer.SealEnv(t.EnvVars, t.EncryptedKeys, previous.EnvVars)
		if err != nil {
			return Change{}, err
		}
		t.EnvVars = env
	}
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return Change{}, err
	}
	return Change{Writes: []Write{{Path: File(Template, name), Data: append(data, '\n')}}}, nil
}
