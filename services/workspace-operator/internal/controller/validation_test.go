package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
)

// TestAdmission checks what the CRD's schema and CEL rules refuse, on the
// real apiserver.
func TestAdmission(t *testing.T) {
	e := startOperator(t, localImages)
	ctx := context.Background()
	tests := map[string]struct {
		ws   *v1alpha1.Workspace
		want string // "" = accepted
	}{
		"container":            {ws: newWS(e.ns, "ok1")},
		"host, defaults":       {ws: newWS(e.ns, "ok2", func(s *v1alpha1.WorkspaceSpec) { *s = v1alpha1.WorkspaceSpec{DisplayName: "h", Path: "/srv/work"} })},
		"host with distro":     {ws: newWS(e.ns, "bad1", func(s *v1alpha1.WorkspaceSpec) { s.Type = v1alpha1.TypeHost }), want: "container workspaces only"},
		"unknown distro":       {ws: newWS(e.ns, "bad2", func(s *v1alpha1.WorkspaceSpec) { s.Distro = "windows-11" }), want: "spec.distro"},
		"relative path":        {ws: newWS(e.ns, "bad3", func(s *v1alpha1.WorkspaceSpec) { s.Path = "work" }), want: "spec.path"},
		"path traversal":       {ws: newWS(e.ns, "bad4", func(s *v1alpha1.WorkspaceSpec) { s.Path = "/srv/../etc" }), want: ". or .. segments"},
		"bad env name":         {ws: newWS(e.ns, "bad5", func(s *v1alpha1.WorkspaceSpec) { s.EnvVars = map[string]string{"1BAD": "x"} }), want: "environment variable names"},
		"bad skill name":       {ws: newWS(e.ns, "bad6", func(s *v1alpha1.WorkspaceSpec) { s.Skills = []string{"../etc"} }), want: "spec.skills"},
		"empty name":           {ws: newWS(e.ns, "bad7", func(s *v1alpha1.WorkspaceSpec) { s.DisplayName = "" }), want: "spec.displayName"},
		"unknown storage rule": {ws: newWS(e.ns, "bad8", func(s *v1alpha1.WorkspaceSpec) { s.Storage = &v1alpha1.WorkspaceStorage{RetainPolicy: "Forever"} }), want: "retainPolicy"},
		// Reserved names: a Workspace named like a host runtime would take
		// its Pod, volume and agent Secret.
		"reserved runtime name":  {ws: newWS(e.ns, "sortie-host-runtime"), want: "reserved"},
		"reserved owner runtime": {ws: newWS(e.ns, "sortie-host-runtime-bob"), want: "reserved"},
		"reserved prefix":        {ws: newWS(e.ns, "sortie-x"), want: "reserved"},
		"prefix-like name":       {ws: newWS(e.ns, "sortie")},
		"name too long":          {ws: newWS(e.ns, strings.Repeat("a", 64)), want: "at most 63"},
		"63 characters":          {ws: newWS(e.ns, strings.Repeat("b", 63))},
		"another's env secret":   {ws: newWS(e.ns, "bad10", func(s *v1alpha1.WorkspaceSpec) { s.EnvSecretRef = "victim-env" }), want: "own Secret"},
		"own env secret":         {ws: newWS(e.ns, "ok3", func(s *v1alpha1.WorkspaceSpec) { s.EnvSecretRef = "ok3-env" })},
		"owned":                  {ws: newWS(e.ns, "owned", func(s *v1alpha1.WorkspaceSpec) { s.Owner = "alice" })},
		// Resources: positive amounts, requests within limits, containers only.
		"resources": {ws: newWS(e.ns, "ok4", func(s *v1alpha1.WorkspaceSpec) {
			s.Resources = resources("500m", "1Gi", "1Gi", "2", "4Gi", "10Gi")
		})},
		"integer cpu": {ws: newWS(e.ns, "ok5", func(s *v1alpha1.WorkspaceSpec) {
			s.Resources = &v1alpha1.WorkspaceResources{Limits: &v1alpha1.ResourceAmounts{CPU: qty("3")}}
		})},
		"zero memory": {ws: newWS(e.ns, "bad14", func(s *v1alpha1.WorkspaceSpec) {
			s.Resources = resources("", "", "", "", "0", "")
		}), want: "memory must be positive"},
		"negative cpu": {ws: newWS(e.ns, "bad15", func(s *v1alpha1.WorkspaceSpec) {
			s.Resources = resources("-1", "", "", "", "", "")
		}), want: "cpu must be a plain quantity"},
		"host with resources": {ws: newWS(e.ns, "bad16", func(s *v1alpha1.WorkspaceSpec) {
			*s = v1alpha1.WorkspaceSpec{DisplayName: "h", Resources: resources("", "", "", "1", "", "")}
		}), want: "container workspaces only"},
		"runtime class": {ws: newWS(e.ns, "ok6", func(s *v1alpha1.WorkspaceSpec) { s.RuntimeClassName = "gvisor" })},
		"runtime class not a DNS label": {ws: newWS(e.ns, "bad17", func(s *v1alpha1.WorkspaceSpec) { s.RuntimeClassName = "Kata.Containers" }),
			want: "spec.runtimeClassName"},
		"host with a runtime class": {ws: newWS(e.ns, "bad18", func(s *v1alpha1.WorkspaceSpec) {
			*s = v1alpha1.WorkspaceSpec{DisplayName: "h", RuntimeClassName: "gvisor"}
		}), want: "container workspaces only"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := e.client.Create(ctx, tc.ws)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a valid workspace was refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want Invalid mentioning %q", err, tc.want)
			}
		})
	}
	update(t, e, "ok1", func(ws *v1alpha1.Workspace) { ws.Spec.DisplayName = "renamed" })
	ws := getWS(t, e, "ok1")
	ws.Spec.Type = v1alpha1.TypeHost
	ws.Spec.Distro, ws.Spec.InitScript = "", ""
	if err := e.client.Update(ctx, ws); err == nil || !strings.Contains(err.Error(), "type cannot change") {
		t.Errorf("changing the type: %v, want refused", err)
	}
	if got := getWS(t, e, "ok2"); got.Spec.Type != v1alpha1.TypeHost {
		t.Errorf("default type = %q, want host", got.Spec.Type)
	}

	// The owner never changes: not to another user, not away, and an
	// unowned workspace (the admins') cannot be given one.
	for name, change := range map[string]struct {
		ws    string
		owner string
	}{
		"to another user": {"owned", "bob"},
		"removed":         {"owned", ""},
		"given":           {"ok1", "mallory"},
	} {
		ws := getWS(t, e, change.ws)
		ws.Spec.Owner = change.owner
		if err := e.client.Update(ctx, ws); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "owner cannot change") {
			t.Errorf("owner %s: %v, want refused", name, err)
		}
	}
	if got := getWS(t, e, "owned"); got.Spec.Owner != "alice" {
		t.Errorf("owner = %q after refused changes", got.Spec.Owner)
	}
	// Everything else of an owned workspace may change.
	update(t, e, "owned", func(ws *v1alpha1.Workspace) { ws.Spec.DisplayName = "still alice's" })
}

func qty(s string) *resource.Quantity {
	if s == "" {
		return nil
	}
	q := resource.MustParse(s)
	return &q
}

// resources are requests and limits of cpu, memory and ephemeral-storage;
// "" leaves one out.
func resources(reqCPU, reqMem, reqDisk, limCPU, limMem, limDisk string) *v1alpha1.WorkspaceResources {
	amounts := func(cpu, mem, disk string) *v1alpha1.ResourceAmounts {
		if cpu == "" && mem == "" && disk == "" {
			return nil
		}
		return &v1alpha1.ResourceAmounts{CPU: qty(cpu), Memory: qty(mem), EphemeralStorage: qty(disk)}
	}
	return &v1alpha1.WorkspaceResources{Requests: amounts(reqCPU, reqMem, reqDisk), Limits: amounts(limCPU, limMem, limDisk)}
}

// TestAdmissionHugeExponent: a quantity with a huge exponent, on which
// resource.ParseQuantity does not return, is refused by the schema's
// rules before anything parses it (a Workspace holding one would stop
// every client that decodes it, the operator's cache first).
func TestAdmissionHugeExponent(t *testing.T) {
	e := startOperator(t, localImages)
	for i, q := range []any{"1e1444444444444444440", "1E1444444444444444440", "+1", "1e3", ".5", "0x10"} {
		ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(20*time.Second))
		ws := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "sortie.dev/v1alpha1", "kind": "Workspace",
			"metadata": map[string]any{"name": fmt.Sprintf("exp%d", i), "namespace": e.ns},
			"spec": map[string]any{"displayName": "x", "type": "container",
				"resources": map[string]any{"requests": map[string]any{"cpu": q}, "limits": map[string]any{"cpu": q, "memory": q}}},
		}}
		err := e.client.Create(ctx, ws)
		cancel()
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "plain quantity") {
			t.Errorf("%v: %v, want refused as not a plain quantity", q, err)
		}
	}
}
