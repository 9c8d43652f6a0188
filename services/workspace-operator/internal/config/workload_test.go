package config

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"sortie.dev/api/v1alpha1"
)

func testWorkload(t testing.TB) *Workload {
	t.Helper()
	c, err := load(map[string]string{"SORTIE_AUTH_DEV_MODE": "true",
		"SORTIE_WORKSPACE_REQUESTS": "cpu=100m,memory=256Mi", "SORTIE_WORKSPACE_LIMITS": "cpu=1,memory=1Gi,ephemeral-storage=2Gi",
		"SORTIE_WORKSPACE_MAX_RESOURCES": "cpu=4,memory=8Gi,ephemeral-storage=20Gi"})
	if err != nil {
		t.Fatal(err)
	}
	return &c.Workload
}

func q(s string) *resource.Quantity {
	if s == "" {
		return nil
	}
	v := resource.MustParse(s)
	return &v
}

func amounts(cpu, mem, disk string) *v1alpha1.ResourceAmounts {
	if cpu == "" && mem == "" && disk == "" {
		return nil
	}
	return &v1alpha1.ResourceAmounts{CPU: q(cpu), Memory: q(mem), EphemeralStorage: q(disk)}
}

func show(l corev1.ResourceList) string {
	var parts []string
	for _, r := range workloadResources {
		if v, ok := l[r]; ok {
			parts = append(parts, string(r)+"="+v.String())
		}
	}
	return strings.Join(parts, ",")
}

func TestResources(t *testing.T) {
	w := testWorkload(t)
	for name, tc := range map[string]struct {
		req, lim         *v1alpha1.ResourceAmounts
		wantReq, wantLim string
		err              string
	}{
		"defaults":          {wantReq: "cpu=100m,memory=256Mi", wantLim: "cpu=1,memory=1Gi,ephemeral-storage=2Gi"},
		"own":               {req: amounts("200m", "", "1Gi"), lim: amounts("2", "", ""), wantReq: "cpu=200m,memory=256Mi,ephemeral-storage=1Gi", wantLim: "cpu=2,memory=1Gi,ephemeral-storage=2Gi"},
		"request lifts":     {req: amounts("", "2Gi", ""), wantReq: "cpu=100m,memory=2Gi", wantLim: "cpu=1,memory=2Gi,ephemeral-storage=2Gi"},
		"limit lowers":      {lim: amounts("50m", "", ""), wantReq: "cpu=50m,memory=256Mi", wantLim: "cpu=50m,memory=1Gi,ephemeral-storage=2Gi"},
		"own request>limit": {req: amounts("2", "", ""), lim: amounts("1", "", ""), err: "the cpu request 2 is above its limit 1"},
		"request over max":  {req: amounts("", "", "30Gi"), err: "the ephemeral-storage request 30Gi is above the maximum 20Gi"},
		"limit over max":    {lim: amounts("", "9Gi", ""), err: "the memory limit 9Gi is above the maximum 8Gi"},
		"zero":              {lim: amounts("", "0", ""), err: "memory must be positive, not 0"},
		"negative":          {req: amounts("-1", "", ""), err: "cpu must be positive, not -1"},
		"at max":            {req: amounts("4", "8Gi", "20Gi"), lim: amounts("4", "8Gi", "20Gi"), wantReq: "cpu=4,memory=8Gi,ephemeral-storage=20Gi", wantLim: "cpu=4,memory=8Gi,ephemeral-storage=20Gi"},
	} {
		got, err := w.Resources(&v1alpha1.WorkspaceResources{Requests: tc.req, Limits: tc.lim})
		var re *ResourceError
		switch {
		case tc.err != "":
			if !errors.As(err, &re) || re.Error() != tc.err {
				t.Errorf("%s: %v, want %q", name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case show(got.Requests) != tc.wantReq || show(got.Limits) != tc.wantLim:
			t.Errorf("%s: requests %s limits %s, want %s and %s", name, show(got.Requests), show(got.Limits), tc.wantReq, tc.wantLim)
		}
	}
	if got, err := w.Resources(nil); err != nil || show(got.Limits) != "cpu=1,memory=1Gi,ephemeral-storage=2Gi" {
		t.Errorf("nil: %v %v", got, err)
	}
}

// FuzzResources: whatever a workspace asks for, the answer is an error
// saying why, or requests within limits within the maxima.
func FuzzResources(f *testing.F) {
	for _, s := range [][6]string{
		{"100m", "1Gi", "1Gi", "2", "4Gi", "10Gi"}, {"", "", "", "", "", ""}, {"9", "", "", "", "", ""},
		{"1e3", "1Ei", "0.5", "1m", "", ""}, {"-1", "0", "", "", "", ""}, {"", "", "", "1n", "1", "1k"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	w := testWorkload(f)
	f.Fuzz(func(t *testing.T, rc, rm, rd, lc, lm, ld string) {
		// A spec holds only what the CRD admits: plain quantities (a huge
		// exponent would hang resource.ParseQuantity itself; the first
		// crasher found).
		parse := func(s string) *resource.Quantity {
			v, err := v1alpha1.ParseAmount(s)
			if err != nil {
				return nil
			}
			return &v
		}
		spec := &v1alpha1.WorkspaceResources{
			Requests: &v1alpha1.ResourceAmounts{CPU: parse(rc), Memory: parse(rm), EphemeralStorage: parse(rd)},
			Limits:   &v1alpha1.ResourceAmounts{CPU: parse(lc), Memory: parse(lm), EphemeralStorage: parse(ld)},
		}
		got, err := w.Resources(spec)
		if err != nil {
			var re *ResourceError
			if !errors.As(err, &re) || re.Msg == "" {
				t.Fatalf("an error that is not a ResourceError: %v", err)
			}
			return
		}
		for _, r := range workloadResources {
			req, hasReq := got.Requests[r]
			lim, hasLim := got.Limits[r]
			if (hasReq && req.Sign() <= 0) || (hasLim && lim.Sign() <= 0) {
				t.Fatalf("%s %s/%s not positive", r, req.String(), lim.String())
			}
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				t.Fatalf("%s request %s above limit %s", r, req.String(), lim.String())
			}
			max := w.Max[r]
			if (hasReq && req.Cmp(max) > 0) || (hasLim && lim.Cmp(max) > 0) {
				t.Fatalf("%s %s/%s above the maximum %s", r, req.String(), lim.String(), max.String())
			}
		}
	})
}
