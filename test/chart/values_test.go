package chart

// valueSet is one way to install the chart, used by the render, lint and
// dry-run tests.
type valueSet struct {
	values map[string]any
	// separateWorkspaces: the set puts workspaces in their own namespace
	// (the tests fill in its name).
	separateWorkspaces bool
}

// valueSets are the default values and several non-default installs.
// workspaceNS names the namespace sets with separateWorkspaces use.
func valueSets(workspaceNS string) map[string]valueSet {
	return map[string]valueSet{
		"default": {values: map[string]any{}},
		"ingress with TLS on ingress-nginx": {values: map[string]any{
			"ingress": map[string]any{
				"enabled": true, "className": "nginx", "host": "sortie.example.com",
				"tls":         map[string]any{"enabled": true, "secretName": "sortie-example-tls"},
				"annotations": map[string]any{"cert-manager.io/cluster-issuer": "letsencrypt"},
			},
			"trustedProxies": []any{"10.0.0.0/8"},
			"cors":           map[string]any{"origins": []any{"https://app.example.com"}},
		}},
		"gateway API and ServiceMonitor": {values: map[string]any{
			"gatewayAPI": map[string]any{
				"enabled": true, "hostnames": []any{"sortie.example.com"},
				"parentRefs": []any{map[string]any{"name": "public", "namespace": "gateways"}},
			},
			"metrics":       map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}}},
			"networkPolicy": map[string]any{"metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}}},
		}},
		"external Redis, several users, existing secrets": {values: map[string]any{
			"redis":         map[string]any{"enabled": false},
			"externalRedis": map[string]any{"url": "rediss://redis.example.com:6380/2", "passwordSecret": map[string]any{"name": "redis-creds", "key": "pw"}},
			"auth": map[string]any{
				"mode":        "multi",
				"users":       map[string]any{"existingSecret": "sortie-users"},
				"signingKeys": map[string]any{"existingSecret": "sortie-keys"},
			},
			"library": map[string]any{
				"encryption":  map[string]any{"existingSecret": "library-key", "existingSecretKey": "key"},
				"git":         map[string]any{"remote": "https://git.example.com/team/library.git", "existingSecret": "library-git", "tokenKey": "token"},
				"persistence": map[string]any{"existingClaim": "library-data"},
			},
			"missionControl": map[string]any{
				"providers":   map[string]any{"existingSecret": "llm-keys"},
				"credentials": map[string]any{"existingSecret": "mc-credentials", "existingSecretKey": "key"},
				"autoscaling": map[string]any{"enabled": true, "maxReplicas": 10},
			},
		}},
		"dev mode without persistence or policies": {values: map[string]any{
			"auth":              map[string]any{"mode": "dev", "replicas": 1},
			"library":           map[string]any{"persistence": map[string]any{"enabled": false}},
			"redis":             map[string]any{"persistence": map[string]any{"enabled": false}, "auth": map[string]any{"enabled": false}},
			"networkPolicy":     map[string]any{"enabled": false},
			"crds":              map[string]any{"keep": false},
			"secrets":           map[string]any{"keep": false},
			"workspaceOperator": map[string]any{"replicas": 1},
		}},
		"separate workspace namespace": {separateWorkspaces: true, values: map[string]any{
			"workspaces": map[string]any{
				"namespace": workspaceNS, "createNamespace": true, "defaultDistro": "debian-bookworm",
				"networkPolicy": map[string]any{"egress": []any{}},
			},
			"global": map[string]any{"image": map[string]any{"registry": "registry.example.com/sortie", "tag": "1.2.3"}},
		}},
		"local node": {values: localNodeValues()},
	}
}

// localNodeValues install the chart on hack/cluster.sh's node: images
// built by hack/images.sh, no cluster DNS, every distro on the Debian image.
func localNodeValues() map[string]any {
	debian := "localhost/debian:bookworm"
	return map[string]any{
		"serviceDiscovery": "env",
		"global":           map[string]any{"image": map[string]any{"registry": "localhost", "tag": "dev"}},
		"workspaces": map[string]any{
			"defaultDistro": "debian-bookworm",
			"distroImages": map[string]any{
				"ubuntu-noble": debian, "ubuntu-jammy": debian, "debian-bookworm": debian, "arch-linux": debian,
			},
			"storage": "1Gi", "hostRuntime": map[string]any{"storage": "1Gi"},
		},
		"redis": map[string]any{
			"image":   map[string]any{"registry": "localhost", "repository": "sortie-redis", "tag": "dev"},
			"command": []any{"/usr/local/bin/redis-server"},
		},
	}
}
