package stats

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

func TestRead(t *testing.T) {
	tests := map[string]struct {
		cgroup map[string]string
		proc   map[string]string
		want   agentapi.Stats
	}{
		"cgroup v2 with limits": {
			cgroup: map[string]string{
				"cgroup.controllers": "cpu memory\n",
				"cpu.stat":           "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
				"cpu.max":            "150000 100000\n",
				"memory.current":     "104857600\n",
				"memory.max":         "536870912\n",
			},
			want: agentapi.Stats{Source: "cgroup-v2", CPU: agentapi.CPUStats{UsageSeconds: 2.5, Cores: f64(1.5)},
				Memory: agentapi.MemoryStats{UsedBytes: 104857600, LimitBytes: i64(536870912)}},
		},
		"cgroup v2 unlimited": {
			cgroup: map[string]string{
				"cgroup.controllers": "cpu memory\n",
				"cpu.stat":           "usage_usec 1000\n",
				"cpu.max":            "max 100000\n",
				"memory.current":     "4096\n",
				"memory.max":         "max\n",
			},
			want: agentapi.Stats{Source: "cgroup-v2", CPU: agentapi.CPUStats{UsageSeconds: 0.001}, Memory: agentapi.MemoryStats{UsedBytes: 4096}},
		},
		"cgroup v1 with limits": {
			cgroup: map[string]string{
				"cpuacct/cpuacct.usage":        "3000000000\n",
				"cpu/cpu.cfs_quota_us":         "200000\n",
				"cpu/cpu.cfs_period_us":        "100000\n",
				"memory/memory.usage_in_bytes": "2048\n",
				"memory/memory.limit_in_bytes": "1073741824\n",
			},
			want: agentapi.Stats{Source: "cgroup-v1", CPU: agentapi.CPUStats{UsageSeconds: 3, Cores: f64(2)},
				Memory: agentapi.MemoryStats{UsedBytes: 2048, LimitBytes: i64(1 << 30)}},
		},
		"cgroup v1 unlimited": {
			cgroup: map[string]string{
				"cpuacct/cpuacct.usage":        "5\n",
				"cpu/cpu.cfs_quota_us":         "-1\n",
				"cpu/cpu.cfs_period_us":        "100000\n",
				"memory/memory.usage_in_bytes": "2048\n",
				"memory/memory.limit_in_bytes": "9223372036854771712\n",
			},
			want: agentapi.Stats{Source: "cgroup-v1", CPU: agentapi.CPUStats{UsageSeconds: 5e-9}, Memory: agentapi.MemoryStats{UsedBytes: 2048}},
		},
		"proc fallback": {
			cgroup: map[string]string{},
			proc: map[string]string{
				"stat":    "cpu  100 10 50 1000 20 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n",
				"meminfo": "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n",
			},
			want: agentapi.Stats{Source: "proc", CPU: agentapi.CPUStats{UsageSeconds: 1.7},
				Memory: agentapi.MemoryStats{UsedBytes: 600 * 1024, LimitBytes: i64(1000 * 1024)}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			disk := t.TempDir()
			r := Reader{CgroupRoot: writeFiles(t, tc.cgroup), ProcRoot: writeFiles(t, tc.proc), DiskPath: disk}
			got, err := r.Read()
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			opts := cmp.Options{cmpopts.IgnoreFields(agentapi.Stats{}, "Disk"), cmpopts.EquateApprox(0, 1e-12)}
			if name == "proc fallback" {
				opts = append(opts, cmpopts.IgnoreFields(agentapi.CPUStats{}, "Cores")) // the machine's CPU count
			}
			if diff := cmp.Diff(tc.want, got, opts); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
			if got.Disk.Path != disk || got.Disk.TotalBytes <= 0 || got.Disk.UsedBytes < 0 || got.Disk.UsedBytes > got.Disk.TotalBytes {
				t.Errorf("disk %+v", got.Disk)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	r := Reader{CgroupRoot: writeFiles(t, map[string]string{"cgroup.controllers": "", "cpu.stat": "garbage\n"}), DiskPath: t.TempDir()}
	if _, err := r.Read(); err == nil {
		t.Error("malformed cpu.stat: no error")
	}
	r = Reader{CgroupRoot: t.TempDir(), ProcRoot: t.TempDir(), DiskPath: "/no/such/dir"}
	if _, err := r.Read(); err == nil {
		t.Error("no sources: no error")
	}
}
