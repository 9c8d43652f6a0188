package rest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/agentapi"
	"sortie.dev/services/workspace-operator/internal/controller"
)

// WorkspaceStats is one workspace's usage as its agent reports it.
type WorkspaceStats struct {
	ID     string               `json:"id"`
	Name   string               `json:"name"`
	CPU    agentapi.CPUStats    `json:"cpu"`
	Memory agentapi.MemoryStats `json:"memory"`
	Disk   agentapi.DiskStats   `json:"disk"`
}

// StatsResponse is GET /api/stats. The usage comes from the workspaces'
// agents (their cgroups and volumes): this operator does not assume the
// cluster runs a metrics API. Network usage is not measured (null).
type StatsResponse struct {
	Source      string           `json:"source"`
	TimestampMS int64            `json:"timestamp_ms"`
	Workspaces  map[string]int   `json:"workspaces"`
	CPUSeconds  float64          `json:"cpu_usage_seconds"`
	MemoryUsed  int64            `json:"memory_used"`
	MemoryLimit *int64           `json:"memory_total"`
	DiskUsed    int64            `json:"disk_used"`
	DiskTotal   int64            `json:"disk_total"`
	Network     *struct{}        `json:"network"`
	PerSpace    []WorkspaceStats `json:"per_workspace"`
	Unreachable []string         `json:"unreachable"`
}

// stats asks the agents of the caller's ready workspaces (all of them for
// an admin) at once, each call bounded, so one stuck agent cannot hold the
// answer. Host workspaces share their runtime's cgroup and volume: each
// runtime is counted once, under its default workspace's id (the caller's
// own default is the nil UUID).
func (h *Handler) stats(c *gin.Context) {
	ctx := c.Request.Context()
	who := callerOf(c)
	items, err := h.visible(ctx, who, "")
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	out := StatsResponse{Source: "workspace-agents", TimestampMS: time.Now().UnixMilli(),
		Workspaces: map[string]int{"total": len(items)}, PerSpace: []WorkspaceStats{}, Unreachable: []string{}}
	type probe struct {
		ws       *v1alpha1.Workspace
		id, name string
	}
	var probes []*probe
	runtimes := map[string]*probe{}
	for i := range items {
		ws := &items[i]
		out.Workspaces[status(ws)]++
		if ws.Spec.Type == v1alpha1.TypeContainer {
			if ws.Status.Phase == v1alpha1.PhaseReady {
				probes = append(probes, &probe{ws: ws, id: h.restID(ws, who), name: ws.Spec.DisplayName})
			}
			continue
		}
		rt := controller.HostRuntimeOf(ws, h.MultiUser)
		p := runtimes[rt]
		if p == nil {
			p = &probe{id: h.restID(ws, who), name: "host runtime (all host workspaces)"}
			if h.MultiUser && ws.Spec.Owner != "" {
				p.name = "host runtime of " + ws.Spec.Owner + " (all their host workspaces)"
			}
			runtimes[rt] = p
			probes = append(probes, p)
		}
		if ws.Name == DefaultName || v1alpha1.IsUserDefault(ws) {
			p.id = h.restID(ws, who)
		}
		if p.ws == nil && ws.Status.Phase == v1alpha1.PhaseReady {
			p.ws = ws
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var limit int64
	unlimited := false
	for _, p := range probes {
		if p.ws == nil {
			continue // no ready workspace in this runtime
		}
		id, name := p.id, p.name
		a, err := h.agentClient(ctx, p.ws)
		if err != nil {
			mu.Lock()
			out.Unreachable = append(out.Unreachable, id)
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := a.Stats(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Unreachable = append(out.Unreachable, id)
				return
			}
			out.PerSpace = append(out.PerSpace, WorkspaceStats{ID: id, Name: name, CPU: st.CPU, Memory: st.Memory, Disk: st.Disk})
			out.CPUSeconds += st.CPU.UsageSeconds
			out.MemoryUsed += st.Memory.UsedBytes
			if st.Memory.LimitBytes == nil {
				unlimited = true
			} else {
				limit += *st.Memory.LimitBytes
			}
			out.DiskUsed += st.Disk.UsedBytes
			out.DiskTotal += st.Disk.TotalBytes
		})
	}
	wg.Wait()
	if !unlimited && len(out.PerSpace) > 0 {
		out.MemoryLimit = &limit
	}
	c.JSON(http.StatusOK, out)
}

// agentClient builds a client for a workspace's agent from its Pod's IP
// and its token Secret. Both are named from the workspace itself (its own,
// or its owner's host runtime), never taken from its status, so a host
// workspace can only reach the runtime it lives in.
func (h *Handler) agentClient(ctx context.Context, ws *v1alpha1.Workspace) (*agentapi.Client, error) {
	if ws.Status.PodName == "" {
		return nil, fmt.Errorf("workspace %s has no pod", ws.Name)
	}
	pod := &corev1.Pod{}
	sec := &corev1.Secret{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: controller.AgentPodName(ws, h.MultiUser)}, pod); err != nil {
		return nil, err
	}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: controller.AgentSecretName(ws, h.MultiUser)}, sec); err != nil {
		return nil, err
	}
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s has no IP", pod.Name)
	}
	return agentapi.NewClient(fmt.Sprintf("http://%s:%d", pod.Status.PodIP, h.AgentPort), string(sec.Data["token"]), h.HTTP), nil
}
