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

// stats asks every ready container workspace's agent at once, each call
// bounded, so one stuck agent cannot hold the answer.
func (h *Handler) stats(c *gin.Context) {
	var wl v1alpha1.WorkspaceList
	if err := h.Client.List(c.Request.Context(), &wl, client.InNamespace(h.Namespace)); err != nil {
		apierror.Respond(c, fmt.Errorf("list workspaces: %w", err))
		return
	}
	out := StatsResponse{Source: "workspace-agents", TimestampMS: time.Now().UnixMilli(),
		Workspaces: map[string]int{"total": len(wl.Items)}, PerSpace: []WorkspaceStats{}, Unreachable: []string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var limit int64
	unlimited, hostSeen := false, false
	for i := range wl.Items {
		ws := &wl.Items[i]
		out.Workspaces[status(ws)]++
		if ws.Status.Phase != v1alpha1.PhaseReady {
			continue
		}
		id, name := restID(ws), ws.Spec.DisplayName
		if ws.Spec.Type != v1alpha1.TypeContainer {
			// Host workspaces share the host runtime's cgroup and volume:
			// it is counted once, under the default host workspace.
			if hostSeen {
				continue
			}
			hostSeen, id, name = true, DefaultID, "host runtime (all host workspaces)"
		}
		a, err := h.agentClient(c.Request.Context(), ws)
		if err != nil {
			mu.Lock()
			out.Unreachable = append(out.Unreachable, id)
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
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
// and its token Secret.
func (h *Handler) agentClient(ctx context.Context, ws *v1alpha1.Workspace) (*agentapi.Client, error) {
	if ws.Status.PodName == "" {
		return nil, fmt.Errorf("workspace %s has no pod", ws.Name)
	}
	pod := &corev1.Pod{}
	sec := &corev1.Secret{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Status.PodName}, pod); err != nil {
		return nil, err
	}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: controller.AgentSecretName(ws)}, sec); err != nil {
		return nil, err
	}
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s has no IP", pod.Name)
	}
	return agentapi.NewClient(fmt.Sprintf("http://%s:%d", pod.Status.PodIP, h.AgentPort), string(sec.Data["token"]), h.HTTP), nil
}
