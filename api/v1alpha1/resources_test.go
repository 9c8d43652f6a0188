package v1alpha1

import "testing"

// TestParseAmount: plain quantities parse; a sign, an exponent (however
// huge: resource.ParseQuantity would not return) or other text is refused
// before it is parsed.
func TestParseAmount(t *testing.T) {
	for in, want := range map[string]string{"500m": "500m", "2": "2", "4Gi": "4Gi", "0.5": "500m", "0": "0"} {
		q, err := ParseAmount(in)
		if err != nil || q.String() != want {
			t.Errorf("%q: %v %v, want %s", in, q.String(), err, want)
		}
	}
	for _, in := range []string{"", "-1", "+1", "1e3", "1e1444444444444444440", "lots", " 1", "1Gb", "1234567890123456"} {
		if q, err := ParseAmount(in); err == nil {
			t.Errorf("%q: parsed as %s, want refused", in, q.String())
		}
	}
}
