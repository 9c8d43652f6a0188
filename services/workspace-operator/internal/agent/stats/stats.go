// Package stats reads the workspace container's resource usage from its
// cgroup (v2 or v1) and the disk usage of the workdir's filesystem, falling
// back to /proc when no cgroup files are readable.
package stats

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// unlimited is where v1 "no limit" values start: the kernel reports its
// page-counter maximum (9223372036854771712 on 4 KiB pages).
const unlimited = 1 << 62

// Reader reads stats. CgroupRoot is usually /sys/fs/cgroup and ProcRoot
// /proc; they are fields so that tests can point them at fixtures.
type Reader struct {
	CgroupRoot string
	ProcRoot   string
	DiskPath   string
}

// Read takes one sample.
func (r Reader) Read() (agentapi.Stats, error) {
	var (
		s   agentapi.Stats
		err error
	)
	switch {
	case exists(filepath.Join(r.CgroupRoot, "cgroup.controllers")):
		s, err = r.cgroupV2()
	case exists(filepath.Join(r.CgroupRoot, "memory", "memory.usage_in_bytes")):
		s, err = r.cgroupV1()
	default:
		s, err = r.proc()
	}
	if err != nil {
		return agentapi.Stats{}, err
	}
	s.Disk, err = disk(r.DiskPath)
	if err != nil {
		return agentapi.Stats{}, err
	}
	return s, nil
}

func (r Reader) cgroupV2() (agentapi.Stats, error) {
	s := agentapi.Stats{Source: agentapi.StatsSourceCgroupV2}
	usec, err := keyedValue(filepath.Join(r.CgroupRoot, "cpu.stat"), "usage_usec")
	if err != nil {
		return s, err
	}
	s.CPU.UsageSeconds = float64(usec) / 1e6
	// cpu.max is "<quota> <period>" or "max <period>"; absent in the root cgroup.
	if f, err := readFields(filepath.Join(r.CgroupRoot, "cpu.max")); err == nil && len(f) == 2 && f[0] != "max" {
		s.CPU.Cores = ratio(f[0], f[1])
	}
	if s.Memory.UsedBytes, err = intFile(filepath.Join(r.CgroupRoot, "memory.current")); err != nil {
		return s, err
	}
	if f, err := readFields(filepath.Join(r.CgroupRoot, "memory.max")); err == nil && len(f) == 1 && f[0] != "max" {
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			s.Memory.LimitBytes = &v
		}
	}
	return s, nil
}

func (r Reader) cgroupV1() (agentapi.Stats, error) {
	s := agentapi.Stats{Source: agentapi.StatsSourceCgroupV1}
	ns, err := intFile(filepath.Join(r.CgroupRoot, "cpuacct", "cpuacct.usage"))
	if err != nil {
		return s, err
	}
	s.CPU.UsageSeconds = float64(ns) / 1e9
	quota, qerr := readFields(filepath.Join(r.CgroupRoot, "cpu", "cpu.cfs_quota_us"))
	period, perr := readFields(filepath.Join(r.CgroupRoot, "cpu", "cpu.cfs_period_us"))
	if qerr == nil && perr == nil && len(quota) == 1 && len(period) == 1 && quota[0] != "-1" {
		s.CPU.Cores = ratio(quota[0], period[0])
	}
	if s.Memory.UsedBytes, err = intFile(filepath.Join(r.CgroupRoot, "memory", "memory.usage_in_bytes")); err != nil {
		return s, err
	}
	if v, err := intFile(filepath.Join(r.CgroupRoot, "memory", "memory.limit_in_bytes")); err == nil && v < unlimited {
		s.Memory.LimitBytes = &v
	}
	return s, nil
}

// proc reports the whole machine as seen through /proc: a fallback that at
// least gives sane numbers where cgroup files are hidden.
func (r Reader) proc() (agentapi.Stats, error) {
	s := agentapi.Stats{Source: agentapi.StatsSourceProc}
	f, err := readFields(filepath.Join(r.ProcRoot, "stat")) // first line: "cpu user nice system idle iowait irq softirq steal ..."
	if err != nil {
		return s, err
	}
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("unexpected %s/stat", r.ProcRoot)
	}
	var busy int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse %s/stat: %w", r.ProcRoot, err)
		}
		busy += n
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	s.CPU.UsageSeconds = float64(busy) / 100
	cores := float64(runtime.NumCPU())
	s.CPU.Cores = &cores
	total, err := keyedValue(filepath.Join(r.ProcRoot, "meminfo"), "MemTotal:")
	if err != nil {
		return s, err
	}
	avail, err := keyedValue(filepath.Join(r.ProcRoot, "meminfo"), "MemAvailable:")
	if err != nil {
		return s, err
	}
	total, avail = total*1024, avail*1024 // kB
	s.Memory.UsedBytes, s.Memory.LimitBytes = total-avail, &total
	return s, nil
}

func disk(path string) (agentapi.DiskStats, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return agentapi.DiskStats{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	return agentapi.DiskStats{
		Path:       path,
		TotalBytes: int64(st.Blocks) * bs,
		UsedBytes:  int64(st.Blocks-st.Bfree) * bs,
	}, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// readFields returns the whitespace-separated fields of a file's first line.
func readFields(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		return nil, fmt.Errorf("read %s: empty", p)
	}
	return strings.Fields(sc.Text()), nil
}

func intFile(p string) (int64, error) {
	f, err := readFields(p)
	if err != nil {
		return 0, err
	}
	if len(f) != 1 {
		return 0, fmt.Errorf("read %s: want one number", p)
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return v, nil
}

// keyedValue finds the line "<key> <n> ..." in a file and returns n.
func keyedValue(p, key string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == key {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read %s %s: %w", p, key, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("read %s: no %s", p, key)
}

func ratio(num, den string) *float64 {
	n, err1 := strconv.ParseFloat(num, 64)
	d, err2 := strconv.ParseFloat(den, 64)
	if err1 != nil || err2 != nil || d <= 0 || n <= 0 {
		return nil
	}
	v := n / d
	return &v
}
