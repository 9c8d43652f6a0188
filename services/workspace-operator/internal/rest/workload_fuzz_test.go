package rest

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"sortie.dev/api/v1alpha1"
)

// FuzzResourcesBody: any "resources" a client sends is refused with a
// message, or becomes positive amounts of known resources only; reserved
// env var names are always refused.
func FuzzResourcesBody(f *testing.F) {
	for _, seed := range []string{
		`{"requests":{"cpu":"500m","memory":"1Gi"},"limits":{"cpu":2,"ephemeral-storage":"20Gi"}}`,
		`{"limits":{"memory":"0"}}`, `{"requests":{"cpu":-1}}`, `{"limits":{"nvidia.com/gpu":"1"}}`,
		`{"requests":{"cpu":"1e308"}}`, `{"limits":{"memory":"9999999999999999999999Ei"}}`, `{"requests":{"cpu":null}}`,
		`{"requests":{"ephemeral_storage":"1Gi","ephemeral-storage":"2Gi"}}`, `{}`, `null`, `{"requests":[]}`,
		`{"limits":{"cpu":"1e1444444444444444440"}}`, `{"limits":{"cpu":1e1444444444444444440}}`, `{"limits":{"memory":"1E9Mi"}}`,
	} {
		f.Add(seed, "SORTIE_AGENT_X")
	}
	f.Add(`{"limits":{"cpu":"0.001"}}`, "PATH")
	f.Fuzz(func(t *testing.T, body, envName string) {
		var req ResourcesRequest
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			return
		}
		res, err := parseResources("resources", &req)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal without a message")
			}
		} else if res != nil {
			for _, a := range []*v1alpha1.ResourceAmounts{res.Requests, res.Limits} {
				if a == nil {
					continue
				}
				for _, q := range []*resource.Quantity{a.CPU, a.Memory, a.EphemeralStorage} {
					if q != nil && q.Sign() <= 0 {
						t.Fatalf("a quantity that is not positive was accepted: %s", body)
					}
				}
			}
		}
		err = validWorkspaceEnv(map[string]string{envName: "v"})
		if v1alpha1.ReservedEnvName(envName) && err == nil {
			t.Fatalf("reserved %q accepted", envName)
		}
	})
}
