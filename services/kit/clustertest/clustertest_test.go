package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"sortie.dev/services/kit/testwait"
)

// waitFor waits for ok, failing the test on its first error.
func waitFor(t testing.TB, what string, timeout time.Duration, ok func() (bool, error)) {
	t.Helper()
	start := time.Now()
	testwait.Eventually(t, timeout, what, func() (bool, string) {
		done, err := ok()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return done, ""
	})
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// execIn runs a command in a container through the API server and the
// kubelet, as kubectl exec does.
func execIn(ctx context.Context, c *Cluster, ns, pod, container string, cmd ...string) (stdout, stderr string, code int, err error) {
	req := c.Clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewWebSocketExecutor(c.Config, "GET", req.URL().String())
	if err != nil {
		return "", "", 0, err
	}
	var out, errb bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		return out.String(), errb.String(), exit.ExitStatus(), nil
	}
	return out.String(), errb.String(), 0, err
}

// containersOf lists the node's containerd containers of a pod (sandbox
// included), straight from containerd.
func containersOf(t *testing.T, c *Cluster, uid string) []string {
	t.Helper()
	out, err := exec.Command("ctr", "--address", filepath.Join(c.StateDir, "run/containerd/containerd.sock"), "-n", "k8s.io",
		"containers", "ls", "-q", `labels."io.kubernetes.pod.uid"==`+uid).Output()
	if err != nil {
		t.Fatalf("ctr containers ls: %v", err)
	}
	return strings.Fields(string(out))
}

// TestRealNode is the proof that the node runs what a workspace needs: an
// init container hands a file over through an emptyDir, a PVC is bound and
// written, the Pod is Running and Ready, exec through the API server carries
// stdout, stderr and the exit code, and deleting leaves nothing behind.
func TestRealNode(t *testing.T) {
	c := Require(t)
	if c.StateDir == "" {
		t.Fatal("this test inspects the local node; unset SORTIE_TEST_KUBECONFIG")
	}
	ns := c.Namespace(t)
	ctx := context.Background()
	core := c.Clientset.CoreV1()

	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
		},
	}
	if _, err := core.PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	mounts := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "node-check"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			InitContainers: []corev1.Container{{
				Name: "init", Image: DebianImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:      []string{"sh", "-c", "cp /etc/debian_version /shared/handed-over"},
				VolumeMounts: mounts,
			}},
			Containers: []corev1.Container{{
				Name: "main", Image: DebianImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:      []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"},
				VolumeMounts: append(mounts, corev1.VolumeMount{Name: "data", MountPath: "/data"}),
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-s", "/shared/handed-over"}}},
					PeriodSeconds: 1,
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
			},
		},
	}
	created, err := core.Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	waitFor(t, "the pod to be Running and Ready", 2*time.Minute, func() (bool, error) {
		p, err := core.Pods(ns).Get(ctx, "node-check", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, errors.New("pod failed")
		}
		running = p
		return p.Status.Phase == corev1.PodRunning && podReady(p), nil
	})
	if running.Status.PodIP == "" {
		t.Error("the running pod has no IP (CNI)")
	}

	out, _, code, err := execIn(ctx, c, ns, "node-check", "main", "cat", "/shared/handed-over")
	if err != nil || code != 0 || !strings.HasPrefix(out, "12.") {
		t.Errorf("file from the init container: %q, exit %d, %v; want Debian 12's version", out, code, err)
	}
	out, errOut, code, err := execIn(ctx, c, ns, "node-check", "main", "sh", "-c", "echo out; echo err >&2; exit 3")
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Errorf("exec = stdout %q, stderr %q, exit %d; want out, err, 3", out, errOut, code)
	}
	if _, _, code, err := execIn(ctx, c, ns, "node-check", "main", "sh", "-c", "echo persisted > /data/file && cat /data/file"); err != nil || code != 0 {
		t.Fatalf("write to the PVC: exit %d, %v", code, err)
	}
	bound, err := core.PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	if err != nil || bound.Status.Phase != corev1.ClaimBound {
		t.Fatalf("PVC is %v (%v), want Bound", bound.Status.Phase, err)
	}
	pvName := bound.Spec.VolumeName
	hostFiles, _ := filepath.Glob(filepath.Join(c.StateDir, "data", "local-path", pvName+"*", "file"))
	if len(hostFiles) != 1 {
		t.Fatalf("the PVC's file is not on the node's disk: %v", hostFiles)
	}
	ids := containersOf(t, c, string(created.UID))
	if len(ids) < 2 {
		t.Errorf("containerd shows %d containers for the pod, want its sandbox and main container", len(ids))
	}

	// Delete: the pod, its containers, the claim, the volume and its folder go.
	if err := core.Pods(ns).Delete(ctx, "node-check", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod to be gone", time.Minute, func() (bool, error) {
		_, err := core.Pods(ns).Get(ctx, "node-check", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	waitFor(t, "the pod's processes to stop", time.Minute, func() (bool, error) {
		running := tasks(t, c)
		for _, id := range ids {
			if running[id] {
				return false, nil
			}
		}
		return true, nil
	})
	if err := core.PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the volume to be deleted", 2*time.Minute, func() (bool, error) {
		_, err := core.PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	waitFor(t, "the volume's folder to be removed from the node", time.Minute, func() (bool, error) {
		left, _ := filepath.Glob(filepath.Join(c.StateDir, "data", "local-path", pvName+"*"))
		return len(left) == 0, nil
	})
	// The kubelet removes stopped containers in its garbage collection,
	// which runs once a minute.
	waitFor(t, "the pod's containers to be removed from containerd", 2*time.Minute, func() (bool, error) {
		return len(containersOf(t, c, string(created.UID))) == 0, nil
	})
}

// tasks is the set of containerd tasks (running processes) on the node.
func tasks(t *testing.T, c *Cluster) map[string]bool {
	t.Helper()
	out, err := exec.Command("ctr", "--address", filepath.Join(c.StateDir, "run/containerd/containerd.sock"), "-n", "k8s.io",
		"tasks", "ls", "-q").Output()
	if err != nil {
		t.Fatalf("ctr tasks ls: %v", err)
	}
	set := map[string]bool{}
	for _, id := range strings.Fields(string(out)) {
		set[id] = true
	}
	return set
}

func TestLoadImage(t *testing.T) {
	c := Require(t)
	archive := filepath.Join(t.TempDir(), "hello.oci.tar")
	// A one-file image of a static program we own, packed as our service
	// images are: ocipack, then LoadImage.
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// hack/cluster.sh up builds both the pause binary and ocipack.
	pauseBin := filepath.Join(repo, "bin", "images", ".pause")
	ocipack := filepath.Join(repo, "bin", "images", ".ocipack")
	for _, f := range []string{pauseBin, ocipack} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing (hack/cluster.sh up builds it): %v", f, err)
		}
	}
	cmd := exec.Command(ocipack, "-name", "localhost/clustertest-hello:v1", "-o", archive,
		"-file", pauseBin+":/hello:0755", "-entrypoint", "/hello")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ocipack: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("ctr", "--address", filepath.Join(c.StateDir, "run", "containerd", "containerd.sock"),
			"-n", "k8s.io", "images", "rm", "localhost/clustertest-hello:v1").Run()
	})
	ctx := context.Background()
	if err := c.LoadImage(ctx, archive); err != nil {
		t.Fatal(err)
	}
	ns := c.Namespace(t)
	zero := int64(0)
	_, err = c.Clientset.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{{Name: "hello", Image: "localhost/clustertest-hello:v1", ImagePullPolicy: corev1.PullIfNotPresent}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the side-loaded image's pod to run", time.Minute, func() (bool, error) {
		p, err := c.Clientset.CoreV1().Pods(ns).Get(ctx, "hello", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
}

// BenchmarkPodReady is create → Ready for a Debian pod whose image is on
// the node, measured through the API server as a client sees it.
func BenchmarkPodReady(b *testing.B) {
	c := Require(b)
	ns := c.Namespace(b)
	ctx := context.Background()
	core := c.Clientset.CoreV1()
	zero := int64(0)
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-%d", i)
		_, err := core.Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &zero,
				Containers: []corev1.Container{{Name: "main", Image: DebianImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"sleep", "3600"}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		waitFor(b, "pod ready", time.Minute, func() (bool, error) {
			p, err := core.Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil && podReady(p), err
		})
		b.StopTimer()
		_ = core.Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		b.StartTimer()
	}
}
