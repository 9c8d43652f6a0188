package items

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// TestTemplateWorkload: a template's resources and RuntimeClass are kept
// for the workspace operator when they are well formed, and refused (with
// nothing written) when not.
func TestTemplateWorkload(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		want string // "" = accepted
	}{
		"resources and class": {body: `{"resources":{"requests":{"cpu":"500m","memory":"1Gi"},"limits":{"cpu":"2","ephemeral-storage":"20Gi"}},"runtime_class_name":"gvisor"}`},
		"limits only":         {body: `{"resources":{"limits":{"memory":"4Gi"}}}`},
		"unknown resource":    {body: `{"resources":{"limits":{"nvidia.com/gpu":"1"}}}`, want: "is not cpu, memory or ephemeral-storage"},
		"not a quantity":      {body: `{"resources":{"requests":{"memory":"lots"}}}`, want: "not a positive quantity"},
		"zero":                {body: `{"resources":{"limits":{"cpu":"0"}}}`, want: "not a positive quantity"},
		"a huge exponent":     {body: `{"resources":{"limits":{"cpu":"1e1444444444444444440"}}}`, want: "not a positive quantity"},
		"a number":            {body: `{"resources":{"limits":{"cpu":2}}}`, want: "not a valid object"},
		"unknown field":       {body: `{"resources":{"limit":{"cpu":"2"}}}`, want: "not a valid object"},
		"class not a label":   {body: `{"runtime_class_name":"Kata_Containers"}`, want: "not a RuntimeClass name"},
		"class too long":      {body: `{"runtime_class_name":"` + strings.Repeat("a", 64) + `"}`, want: "not a RuntimeClass name"},
	} {
		change, err := Prepare(fstest.MapFS{}, Template, "t", []byte(tc.body), View{})
		if tc.want != "" {
			var inv *Error
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tc.want) || len(change.Writes) != 0 {
				t.Errorf("%s: %v (%d writes), want refused with %q", name, err, len(change.Writes), tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		fsys := fstest.MapFS{}
		for _, w := range change.Writes {
			fsys[w.Path] = &fstest.MapFile{Data: w.Data}
		}
		got, err := Get(fsys, Template, "t", View{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		item := got.(TemplateItem)
		if name == "resources and class" && (item.RuntimeClassName != "gvisor" || item.Resources == nil ||
			item.Resources.Requests["cpu"] != "500m" || item.Resources.Limits["ephemeral-storage"] != "20Gi") {
			t.Errorf("%s: read back %+v %q", name, item.Resources, item.RuntimeClassName)
		}
	}
}
