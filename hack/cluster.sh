#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, without Docker:
# containerd + runc + CNI from Debian, etcd and Kubernetes v1.37.2 built from
# the Go module proxy, images made locally (debootstrap, and our binaries
# packed with hack/tools/cmd/ocipack).
#
#   hack/cluster.sh up          start it (idempotent; builds what is missing first)
#   hack/cluster.sh down        stop every process and remove the node's containers
#                               (etcd data and volumes are kept: state survives)
#   hack/cluster.sh reset       down, then delete all cluster state
#   hack/cluster.sh status      what is running
#   hack/cluster.sh is-up       exit 0 when the cluster is up and schedulable
#   hack/cluster.sh verify-down exit 1, naming them, if processes, mounts or the
#                               bridge of the cluster are left after down
#   hack/cluster.sh kubeconfig  print the admin kubeconfig path
#   hack/cluster.sh load-image FILE.oci.tar   import an image into the node
#   hack/cluster.sh images      (re)build the node's images
#
# State: $SORTIE_CLUSTER_DIR (default .state/cluster). Progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
BIN="$ROOT/bin/k8s/$KUBE_VERSION"
IMAGES="$ROOT/bin/images"
STATE=${SORTIE_CLUSTER_DIR:-$ROOT/.state/cluster}
PKI="$STATE/pki"
NODE=${SORTIE_NODE_NAME:-sortie-node}
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/16
SVC_IP=10.96.0.1
BRIDGE=sortie0
# Below the kernel's ephemeral range (32768-60999): a port in it can be
# taken by any outgoing connection or test server a moment before we bind.
ETCD_PORT=22379
API_PORT=26443
DEBIAN_IMAGE=localhost/debian:bookworm
PAUSE_IMAGE=localhost/pause:3.10
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat debootstrap ethtool ebtables kmod openssl curl)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl local-path-provisioner)

START=$SECONDS
log() { printf '[cluster %3ds] %s\n' $((SECONDS - START)) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kubectl() { "$BIN/kubectl" --kubeconfig "$PKI/admin.kubeconfig" "$@"; }

node_ip() {
  local ip
  ip=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
  [ -n "$ip" ] || die "this machine has no IPv4 address besides loopback; the node needs one"
  echo "$ip"
}

# ---------------------------------------------------------------- install
install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "missing ${missing[*]}. The local cluster runs on Debian or Ubuntu as root, where it installs them itself.
  Elsewhere install containerd, runc, the CNI plugins (bridge, host-local, loopback, portmap), iptables,
  conntrack, socat and debootstrap yourself, or point KUBECONFIG at an existing cluster instead."
  fi
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

preflight() {
  [ "$(id -u)" -eq 0 ] || die "the local cluster needs root (it runs containerd and the kubelet)"
  [ "$(uname -s)" = Linux ] || die "the local cluster needs Linux; point KUBECONFIG at a cluster instead"
}

# ---------------------------------------------------------------- build
build_binaries() {
  "$ROOT/hack/kube-binaries.sh" "${COMPONENTS[@]}" >/dev/null
}

build_images() {
  mkdir -p "$IMAGES"
  local ocipack="$IMAGES/.ocipack"
  (cd "$ROOT/hack/tools" && CGO_ENABLED=0 go build -trimpath -o "$ocipack" ./cmd/ocipack)
  if [ ! -f "$IMAGES/pause.oci.tar" ] || [ "${1:-}" = force ]; then
    log "building the pause image"
    (cd "$ROOT/hack/tools" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$IMAGES/.pause" ./cmd/pause)
    "$ocipack" -name "$PAUSE_IMAGE" -o "$IMAGES/pause.oci.tar" -file "$IMAGES/.pause:/pause:0755" -entrypoint /pause
  fi
  if [ ! -f "$IMAGES/debian-bookworm.oci.tar" ] || [ "${1:-}" = force ]; then
    local mirror rootfs="$IMAGES/.rootfs-bookworm" t0=$SECONDS
    mirror=$(debian_mirror)
    log "making the Debian bookworm image with debootstrap from $mirror (about a minute)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=ca-certificates,curl,git,procps,less \
      bookworm "$rootfs" "$mirror" >"$IMAGES/.debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $IMAGES/.debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/dev/* "$rootfs"/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$IMAGES/.rootfs-bookworm.tar" .
    "$ocipack" -name "$DEBIAN_IMAGE" -o "$IMAGES/debian-bookworm.oci.tar" -rootfs "$IMAGES/.rootfs-bookworm.tar" -cmd /bin/bash
    rm -rf "$rootfs" "$IMAGES/.rootfs-bookworm.tar"
    log "Debian image built in $((SECONDS - t0))s ($(du -h "$IMAGES/debian-bookworm.oci.tar" | cut -f1))"
  fi
}

# The mirror apt already uses on this machine (debootstrap must reach the same one).
debian_mirror() {
  local m
  m=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    awk '{print $2}' | grep -E '/debian/?$' | grep -v security | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- pki
mkcert() { # name CN O SANS(ext line or "")
  local name=$1 cn=$2 o=$3 sans=$4 subj="/CN=$2"
  [ -n "$o" ] && subj="/O=$o/CN=$cn"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig() { # name user-cert
  local name=$1 cert=$2
  cat >"$PKI/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sortie-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: sortie-local
  context: {cluster: sortie-local, user: $cert}
current-context: sortie-local
KC
  chmod 600 "$PKI/$name.kubeconfig"
}

# Certificates are made once; a new node address remakes them. The
# kubeconfigs are rewritten on every start, so a changed port takes effect.
gen_pki() {
  local ip=$1
  if [ -f "$PKI/admin.kubeconfig" ] && [ "$(cat "$PKI/node-ip" 2>/dev/null)" = "$ip" ]; then
    for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$n" "$n"; done
    return 0
  fi
  log "generating certificates for node $NODE ($ip)"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=sortie-local-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  mkcert apiserver kube-apiserver "" "IP:127.0.0.1,IP:$ip,IP:$SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  mkcert admin admin system:masters ""
  mkcert controller-manager system:kube-controller-manager "" ""
  mkcert scheduler system:kube-scheduler "" ""
  mkcert kube-proxy system:kube-proxy "" ""
  mkcert kubelet "system:node:$NODE" system:nodes ""
  mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  mkcert kubelet-serving "$NODE" "" "IP:$ip,IP:127.0.0.1,DNS:$NODE,DNS:localhost"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$n" "$n"; done
  echo "$ip" >"$PKI/node-ip"
}

# ---------------------------------------------------------------- configs
write_configs() {
  local ip=$1 cgv1=false
  [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || cgv1=true
  mkdir -p "$STATE"/{etc,cni/net.d,data,run,logs,pids}
  cat >"$STATE/etc/containerd.toml" <<EOT
version = 2
root = "$STATE/data/containerd"
state = "$STATE/run/containerd"
[grpc]
  address = "$STATE/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$STATE/run/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOT
  cat >"$STATE/cni/net.d/10-sortie.conflist" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "sortie",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/data/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOT
  cat >"$STATE/etc/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$STATE/run/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: $( $cgv1 && echo false || echo true )
failSwapOn: false
port: 10350
readOnlyPort: 0
healthzPort: 10348
healthzBindAddress: 127.0.0.1
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
podLogsDir: $STATE/data/pod-logs
volumePluginDir: $STATE/data/kubelet-plugins
# Images are side-loaded and cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {nodefs.available: "1%", imagefs.available: "1%", memory.available: "100Mi"}
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
# One node runs every workspace here; the pod range (/24) allows ~253.
maxPods: 250
EOT
  local lpp="$STATE/data/local-path"
  mkdir -p "$lpp"
  cat >"$STATE/etc/local-path.yaml" <<EOT
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  config.json: |
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$lpp"]}]}
  setup: |
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
  helperPod.yaml: |
    apiVersion: v1
    kind: Pod
    metadata: {name: helper-pod}
    spec:
      priorityClassName: system-node-critical
      tolerations: [{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}]
      containers:
      - name: helper-pod
        image: $DEBIAN_IMAGE
        imagePullPolicy: Never
EOT
}

# ---------------------------------------------------------------- processes
pidfile() { echo "$STATE/pids/$1.pid"; }
running() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

start() { # name binary args...
  local name=$1; shift
  if running "$name"; then return 0; fi
  # 9>&-: the daemon must not inherit the lock held while starting.
  setsid nohup "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
}

wait_for() { # description seconds command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not happen within ${secs}s; logs are in $STATE/logs"
    fi
    sleep 0.2
  done
}

ctr_() { ctr --address "$STATE/run/containerd/containerd.sock" -n k8s.io "$@"; }

import_images() {
  local have f name
  have=$(ctr_ images ls -q 2>/dev/null || true)
  for f in "$IMAGES"/*.oci.tar; do
    [ -e "$f" ] || continue
    name=$(tar -xOf "$f" index.json | tr -d ' \n' | sed -n 's/.*"io.containerd.image.name":"\([^"]*\)".*/\1/p')
    if [ -z "$name" ] || ! grep -qxF "$name" <<<"$have"; then
      ctr_ images import --no-unpack=false "$f" >/dev/null
    fi
  done
}

node_schedulable() {
  kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints}' 2>/dev/null |
    grep -qx 'True '
}

up() {
  preflight
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  if is_up; then
    log "already up"
    print_usage
    return 0
  fi
  install_packages
  build_binaries
  build_images
  local ip
  ip=$(node_ip)
  gen_pki "$ip"
  write_configs "$ip"
  log "starting the node ($NODE, $ip)"
  sysctl -qw net.ipv4.ip_forward=1
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

  start containerd containerd --config "$STATE/etc/containerd.toml"
  wait_for "containerd" 30 test -S "$STATE/run/containerd/containerd.sock"
  import_images 9>&- &
  local importer=$!

  start etcd "$BIN/etcd" --name sortie --data-dir "$STATE/data/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "sortie=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync --quota-backend-bytes 4294967296
  wait_for "etcd" 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --secure-port "$API_PORT" --advertise-address "$ip" --bind-address 0.0.0.0 \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" --authorization-mode Node,RBAC --allow-privileged=true
  wait_for "kube-apiserver /readyz" 90 kubectl get --raw /readyz

  local cm="$PKI/controller-manager.kubeconfig" sc="$PKI/scheduler.kubeconfig"
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$cm" \
    --authentication-kubeconfig "$cm" --authorization-kubeconfig "$cm" --secure-port 10357 --bind-address 127.0.0.1 \
    --leader-elect=false --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SVC_CIDR"
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$sc" --authentication-kubeconfig "$sc" \
    --authorization-kubeconfig "$sc" --secure-port 10359 --bind-address 127.0.0.1 --leader-elect=false

  wait "$importer" || die "importing images failed"
  start kubelet "$BIN/kubelet" --config "$STATE/etc/kubelet.yaml" --kubeconfig "$PKI/kubelet.kubeconfig" \
    --root-dir "$STATE/data/kubelet" --hostname-override "$NODE" --node-ip "$ip"
  start kube-proxy "$BIN/kube-proxy" --kubeconfig "$PKI/kube-proxy.kubeconfig" --proxy-mode iptables \
    --cluster-cidr "$POD_CIDR" --conntrack-max-per-core 0 --hostname-override "$NODE" \
    --metrics-bind-address 127.0.0.1:10349 --healthz-bind-address 127.0.0.1:10346

  kubectl apply -f "$STATE/etc/local-path.yaml" >/dev/null
  start local-path-provisioner "$BIN/local-path-provisioner" start --kubeconfig "$PKI/admin.kubeconfig" \
    --namespace local-path-storage --configmap-name local-path-config --helper-image "$DEBIAN_IMAGE" \
    --service-account-name local-path-provisioner-service-account

  wait_for "node $NODE Ready" 90 kubectl wait --for=condition=Ready "node/$NODE" --timeout=2s
  wait_for "node $NODE schedulable (not-ready taint lifted)" 90 node_schedulable
  wait_for "the default ServiceAccount" 60 kubectl get serviceaccount default -n default
  cp "$PKI/admin.kubeconfig" "$STATE/kubeconfig"
  write_operator_env
  log "cluster up in $((SECONDS - START))s"
  print_usage
}

# The workspace-operator's image settings for this node: only the Debian
# image can be built here (debootstrap from the apt mirror), so every other
# distro is mapped to it, and said so.
write_operator_env() {
  cat >"$STATE/operator.env" <<ENV
SORTIE_DISTRO_IMAGES=ubuntu-noble=$DEBIAN_IMAGE,ubuntu-jammy=$DEBIAN_IMAGE,debian-bookworm=$DEBIAN_IMAGE,arch-linux=$DEBIAN_IMAGE
SORTIE_DEFAULT_DISTRO=debian-bookworm
SORTIE_AGENT_IMAGE=localhost/sortie-workspace-agent:${SORTIE_IMAGE_TAG:-dev}
SORTIE_IMAGE_PULL_POLICY=IfNotPresent
ENV
}

is_up() {
  for c in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy local-path-provisioner; do
    running "$c" || return 1
  done
  [ -f "$PKI/admin.kubeconfig" ] && node_schedulable
}

print_usage() {
  cat >&2 <<MSG

  Kubernetes $KUBE_VERSION is running on node $NODE.
    export KUBECONFIG=$STATE/kubeconfig
    $BIN/kubectl get nodes
  Workspace images: only $DEBIAN_IMAGE can be built here, so ubuntu-noble,
  ubuntu-jammy and arch-linux workspaces run it too ($STATE/operator.env).
  Stop it with: hack/cluster.sh down

MSG
}

# ---------------------------------------------------------------- down
stop() { # name [seconds]
  local name=$1 secs=${2:-10} pid
  pid=$(cat "$(pidfile "$name")" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

down() {
  preflight
  [ -d "$STATE" ] || { log "nothing to stop"; return 0; }
  exec 9>"$STATE/.lock"
  flock 9
  log "stopping the cluster"
  stop local-path-provisioner & stop kubelet & stop kube-proxy & wait
  # The node's containers: kill and delete every runc container, then the shims.
  if [ -d "$STATE/run/runc" ]; then
    for id in $(runc --root "$STATE/run/runc" list -q 2>/dev/null); do
      runc --root "$STATE/run/runc" kill "$id" KILL 2>/dev/null || true
      runc --root "$STATE/run/runc" delete --force "$id" 2>/dev/null || true
    done
  fi
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $STATE/run/containerd/containerd.sock" 2>/dev/null || true
  stop kube-scheduler & stop kube-controller-manager & stop kube-apiserver & wait
  stop etcd & stop containerd & wait
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  for table in filter nat mangle; do
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
  done
  iptables-save 2>/dev/null | grep -qE 'CNI-|KUBE-' && {
    iptables-save | grep -vE 'CNI-|KUBE-' | iptables-restore 2>/dev/null || true
  }
  ip link delete "$BRIDGE" 2>/dev/null || true
  # Unmount what the kubelet and containerd mounted under the state folder, deepest first.
  grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Containers and pod sandboxes go; etcd data, volumes and certificates stay.
  rm -rf "$STATE/run" "$STATE/data/containerd" "$STATE/data/kubelet" "$STATE/data/cni-ipam" "$STATE/data/pod-logs"
  rm -rf /var/lib/cni/results/sortie-* 2>/dev/null || true
  log "stopped"
}

reset() {
  down
  log "deleting $STATE"
  rm -rf "$STATE"
}

status() {
  for c in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy local-path-provisioner; do
    if running "$c"; then echo "$c: running (pid $(cat "$(pidfile "$c")"))"; else echo "$c: stopped"; fi
  done
  if [ -f "$PKI/admin.kubeconfig" ] && running kube-apiserver; then kubectl get nodes 2>/dev/null || true; fi
}

verify_down() {
  local left=()
  local procs
  procs=$(pgrep -af -- "$STATE|$BIN/" 2>/dev/null | grep -v -- "verify-down" || true)
  [ -n "$procs" ] && left+=("processes:
$procs")
  grep -q " $STATE/" /proc/mounts && left+=("mounts: $(grep -o " $STATE/[^ ]*" /proc/mounts | tr '\n' ' ')")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  ls "$STATE"/pids/*.pid >/dev/null 2>&1 && left+=("pid files in $STATE/pids")
  if [ ${#left[@]} -gt 0 ]; then
    printf 'left after down: %s\n' "${left[@]}" >&2
    return 1
  fi
  log "nothing of the cluster is left running"
}

case "${1:-}" in
  up) up ;;
  is-up) is_up ;;
  verify-down) verify_down ;;
  down) down ;;
  reset) reset ;;
  status) status ;;
  kubeconfig) echo "$STATE/kubeconfig" ;;
  images) preflight; build_images force ;;
  load-image)
    [ -n "${2:-}" ] && [ -f "$2" ] || die "usage: hack/cluster.sh load-image FILE.oci.tar"
    running containerd || die "the cluster is not up"
    ctr_ images import "$2" >/dev/null && log "imported $2" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
