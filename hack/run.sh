#!/usr/bin/env bash
# `make run`: the whole platform on this machine. It starts (or reuses) the
# local Kubernetes node from hack/cluster.sh, a Redis server, every service
# that exists, and the gateway on :8080 that routes /api/... by the route
# table in api/routes.go, as the Helm Ingress does.
#
# State lives in .state/ (git-ignored) and survives restarts; Ctrl-C stops
# everything this script started. With KUBECONFIG pointing at a reachable
# cluster, that cluster is used instead of the local node (the operator then
# needs to reach its Pod IPs, and the node needs our images).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="${SORTIE_STATE_DIR:-$root/.state}"
port="${SORTIE_PORT:-8080}"
redis_port="${SORTIE_REDIS_PORT:-6390}"
namespace="${SORTIE_WORKSPACE_NAMESPACE:-sortie-workspaces}"
kubectl="$root/bin/k8s/v1.37.2/kubectl"
mkdir -p "$state"/{redis,auth/keys,auth/clients,logs,library,mission-control}
chmod 700 "$state"

# Each service listens on loopback only; the gateway is the one way in.
# SORTIE_SERVICE_PORT_BASE moves them all (the e2e tests run a second
# platform beside a developer's).
base="${SORTIE_SERVICE_PORT_BASE:-8181}"
declare -A ports=([auth]=$base [workspace-operator]=$((base + 1)) [library]=$((base + 2)) [mission-control]=$((base + 3))
  [operator-metrics]=$((base + 11)) [operator-probes]=$((base + 12)))

log() { printf '[run %3ss] %s\n' "$SECONDS" "$*" >&2; }

names=()            # services in start order
declare -A pidof=()  # name -> pid
declare -A cmdof=()  # name -> the command, shell-quoted, to restart it
declare -A restarts=()
started_cluster=no
stopping=no
cleanup() {
  trap - INT TERM EXIT
  stopping=yes
  log "stopping"
  # The gateway first, Redis last: nothing is cut off from what it needs.
  local i
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    kill "${pidof[${names[$i]}]}" 2>/dev/null || true
    wait "${pidof[${names[$i]}]}" 2>/dev/null || true
  done
  if [ "$started_cluster" = yes ] && [ "${SORTIE_KEEP_CLUSTER:-}" != true ]; then
    "$root/hack/cluster.sh" down >&2 || true
  fi
  log "stopped; state kept in $state"
}
trap cleanup INT TERM EXIT

# start NAME CMD... : run in the background with its log in logs/NAME.log,
# remembered so that Ctrl-C stops it and a crash restarts it.
start() {
  local name=$1
  shift
  cmdof[$name]=$(printf '%q ' "$@")
  names+=("$name")
  launch "$name"
}

launch() {
  # exec: the remembered pid is the service's own, not a subshell's.
  (eval "exec ${cmdof[$1]}") >>"$state/logs/$1.log" 2>&1 &
  pidof[$1]=$!
}

# wait_ready NAME URL: poll until it answers, or show the log and fail.
wait_ready() {
  local name=$1 url=$2 i
  for i in $(seq 300); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    if ! kill -0 "${pidof[$name]}" 2>/dev/null; then
      log "$name exited; the end of its log ($state/logs/$name.log):"
      tail -n 20 "$state/logs/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  log "$name did not become ready within 60s; see $state/logs/$name.log"
  exit 1
}

command -v redis-server >/dev/null || {
  log "redis-server is not installed: on Debian or Ubuntu run 'sudo apt-get install redis-server' (make deps does it when run as root)"
  exit 1
}

# SORTIE_PREBUILT=true: bin/ and the node's images are built already (make
# test does that before the e2e tests start this script).
if [ "${SORTIE_PREBUILT:-}" = true ]; then
  log "using the binaries in bin/ and the images on the node (SORTIE_PREBUILT)"
else
  log "building the services"
  make -s -C "$root" build
fi

# --- Kubernetes -------------------------------------------------------------
if [ -n "${KUBECONFIG:-}" ] && "$kubectl" get --raw /readyz >/dev/null 2>&1; then
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
  kubeconfig=$KUBECONFIG
  operator_env=/dev/null
else
  if ! "$root/hack/cluster.sh" is-up >/dev/null 2>&1; then
    log "starting the local Kubernetes node (the first start builds Kubernetes: about 10 minutes)"
    "$root/hack/cluster.sh" up >&2
    started_cluster=yes
  else
    log "the local Kubernetes node is already up; it is left running at the end"
  fi
  kubeconfig="$("$root/hack/cluster.sh" kubeconfig)"
  operator_env="$(dirname "$kubeconfig")/operator.env"
  if [ "${SORTIE_PREBUILT:-}" != true ]; then
    log "packing and loading the workspace-agent image"
    "$root/hack/images.sh" --prebuilt workspace-agent >&2
  fi
fi
KUBECTL() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }
KUBECTL apply --server-side -f "$root/api/crds/" >/dev/null
# Workspace Pods run untrusted code: their namespace enforces Pod Security
# baseline (they run as root with a few capabilities, never privileged or
# with host access), and their egress skips the cluster, link-local (cloud
# metadata), CGNAT and IPv6 private ranges, as the chart's policy does. The
# services run on this machine, not in the cluster, so no ingress policy:
# the operator reaches the agents from the host. (The local node's bridge
# CNI does not enforce NetworkPolicies; a cluster of KUBECONFIG may.)
KUBECTL apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    pod-security.kubernetes.io/enforce: baseline
    pod-security.kubernetes.io/warn: baseline
    pod-security.kubernetes.io/audit: baseline
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: sortie-workspaces-egress
  namespace: $namespace
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/managed-by: sortie-workspace-operator
  policyTypes: [Egress]
  egress:
    - ports:
        - {port: 53, protocol: UDP}
        - {port: 53, protocol: TCP}
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10]
        - ipBlock:
            cidr: ::/0
            except: ["fe80::/10", "fc00::/7", "fd00:ec2::254/128"]
YAML

# --- Redis ------------------------------------------------------------------
if [ ! -s "$state/auth/admin-password" ]; then
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$state/auth/admin-password"
  chmod 600 "$state/auth/admin-password"
fi
# Redis on loopback with a password (a shared machine's other users can
# reach loopback ports), given in its config file and to the services as a
# file: never on a command line, where ps shows it. maxmemory with
# noeviction: at the limit Redis refuses writes (the services answer 503)
# rather than silently dropping missions.
if [ ! -s "$state/redis/password" ]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$state/redis/password"
fi
chmod 600 "$state/redis/password"
redis_conf="$state/redis/redis.conf"
(umask 077 && cat >"$redis_conf" <<CONF
port $redis_port
bind 127.0.0.1
protected-mode yes
dir $state/redis
appendonly yes
appendfsync always
save ""
daemonize no
maxmemory ${SORTIE_REDIS_MAXMEMORY:-256mb}
maxmemory-policy noeviction
requirepass $(cat "$state/redis/password")
CONF
)
log "starting redis on 127.0.0.1:$redis_port (password in $state/redis/password, append-only file in $state/redis)"
start redis redis-server "$redis_conf"
for _ in $(seq 50); do
  REDISCLI_AUTH=$(cat "$state/redis/password") redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis_url="redis://127.0.0.1:$redis_port/0"
redis_password=(SORTIE_REDIS_PASSWORD_FILE="$state/redis/password")
auth_url="http://127.0.0.1:${ports[auth]}"
jwks="$auth_url/api/auth/jwks"

# Service credentials: the operator and mission-control call other
# services with short-lived service tokens from auth (client credentials).
for client in workspace-operator mission-control; do
  if [ ! -s "$state/auth/clients/$client" ]; then
    head -c 32 /dev/urandom | base64 | tr -d '/+=' >"$state/auth/clients/$client"
    chmod 600 "$state/auth/clients/$client"
  fi
done
printf '{"workspace-operator": "%s", "mission-control": "%s"}\n' \
  "$(cat "$state/auth/clients/workspace-operator")" "$(cat "$state/auth/clients/mission-control")" >"$state/auth/clients.json"
chmod 600 "$state/auth/clients.json"

# Single-password mode by default; SORTIE_AUTH_USERS_FILE (a JSON list of
# {id, username, password_hash, role}) switches to multi-user mode.
if [ -n "${SORTIE_AUTH_USERS_FILE:-}" ]; then
  login_setting=(SORTIE_AUTH_USERS_FILE="$SORTIE_AUTH_USERS_FILE")
  auth_mode=multi_user
else
  login_setting=(SORTIE_AUTH_PASSWORD_FILE="$state/auth/admin-password")
  auth_mode=single_tenant
fi

# The library seals <encrypted> values in its repository with this key.
if [ ! -s "$state/library/encryption.key" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/library/encryption.key"
  chmod 600 "$state/library/encryption.key"
fi

# mission-control seals provider credentials in Redis with this key.
if [ ! -s "$state/mission-control/credentials.key" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/mission-control/credentials.key"
  chmod 600 "$state/mission-control/credentials.key"
fi

# --- Services ---------------------------------------------------------------
# Auth trusts the X-Forwarded-For of the gateway (on loopback) alone, so its
# login throttle counts each real client address, not the gateway's.
log "starting auth on 127.0.0.1:${ports[auth]}"
start auth env \
  SORTIE_LISTEN_ADDR="127.0.0.1:${ports[auth]}" SORTIE_REDIS_URL="$redis_url" "${redis_password[@]}" \
  "${login_setting[@]}" SORTIE_AUTH_KEYS_DIR="$state/auth/keys" \
  SORTIE_AUTH_CLIENTS_FILE="$state/auth/clients.json" \
  SORTIE_TRUSTED_PROXIES=127.0.0.1 \
  SORTIE_AUTH_GENERATE_KEY=true "$root/bin/auth"
wait_ready auth "http://127.0.0.1:${ports[auth]}/readyz"

library_url=""
if [ -x "$root/bin/library" ]; then
  library_url="http://127.0.0.1:${ports[library]}"
  log "starting the library on 127.0.0.1:${ports[library]} (repository in $state/library)"
  start library env \
    SORTIE_LISTEN_ADDR="127.0.0.1:${ports[library]}" SORTIE_AUTH_JWKS_URL="$jwks" SORTIE_REDIS_URL="$redis_url" "${redis_password[@]}" \
    SORTIE_LIBRARY_DATA_DIR="$state/library" SORTIE_LIBRARY_KUBECONFIG="$kubeconfig" \
    SORTIE_LIBRARY_CONFIGMAP_NAMESPACE="$namespace" SORTIE_LIBRARY_ENCRYPTION_KEY_FILE="$state/library/encryption.key" \
    "$root/bin/library"
  wait_ready library "http://127.0.0.1:${ports[library]}/readyz"
fi
log "starting the workspace-operator on 127.0.0.1:${ports[workspace-operator]} (namespace $namespace)"
start workspace-operator env $(grep -v '^#' "$operator_env" 2>/dev/null | xargs) \
  KUBECONFIG="$kubeconfig" SORTIE_LISTEN_ADDR="127.0.0.1:${ports[workspace-operator]}" \
  SORTIE_METRICS_ADDR="127.0.0.1:${ports[operator-metrics]}" SORTIE_PROBE_ADDR="127.0.0.1:${ports[operator-probes]}" \
  SORTIE_WORKSPACE_NAMESPACE="$namespace" SORTIE_AUTH_JWKS_URL="$jwks" SORTIE_REDIS_URL="$redis_url" "${redis_password[@]}" SORTIE_AUTH_MODE="$auth_mode" \
  SORTIE_LIBRARY_URL="$library_url" SORTIE_AUTH_URL="$auth_url" \
  SORTIE_SERVICE_CLIENT_ID=workspace-operator SORTIE_SERVICE_CLIENT_SECRET_FILE="$state/auth/clients/workspace-operator" \
  "$root/bin/workspace-operator"
wait_ready workspace-operator "http://127.0.0.1:${ports[workspace-operator]}/readyz"

upstreams=()
for svc in auth workspace-operator library mission-control; do
  upstreams+=(-upstream "$svc=http://127.0.0.1:${ports[$svc]}")
done
if [ -x "$root/bin/mission-control" ]; then
  log "starting mission-control on 127.0.0.1:${ports[mission-control]}"
  start mission-control env \
    SORTIE_LISTEN_ADDR="127.0.0.1:${ports[mission-control]}" SORTIE_REDIS_URL="$redis_url" "${redis_password[@]}" SORTIE_AUTH_MODE="$auth_mode" \
    SORTIE_AUTH_JWKS_URL="$jwks" SORTIE_WORKSPACES_URL="http://127.0.0.1:${ports[workspace-operator]}" \
    SORTIE_AUTH_URL="$auth_url" SORTIE_SERVICE_CLIENT_ID=mission-control SORTIE_LIBRARY_URL="$library_url" \
    SORTIE_MC_CREDENTIALS_KEY_FILE="$state/mission-control/credentials.key" \
    SORTIE_SERVICE_CLIENT_SECRET_FILE="$state/auth/clients/mission-control" \
    "$root/bin/mission-control"
  wait_ready mission-control "http://127.0.0.1:${ports[mission-control]}/readyz"
fi

log "starting the gateway on :$port"
# Loopback unless told otherwise: SORTIE_LISTEN=0.0.0.0 (or an address)
# puts the platform on the network.
listen_host=${SORTIE_LISTEN:-127.0.0.1}
start gateway "$root/bin/gateway" -listen "$listen_host:$port" "${upstreams[@]}"
wait_ready gateway "http://127.0.0.1:$port/healthz"

cat <<MSG

  Sortie is running at http://localhost:$port  (logs in $state/logs/)

  Log in (the admin password is in $state/auth/admin-password):
    TOKEN=\$(curl -s -X POST http://localhost:$port/api/auth/login \\
      -H 'Content-Type: application/json' \\
      -d "{\"password\": \"\$(cat $state/auth/admin-password)\"}" | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
    curl -s http://localhost:$port/api/workspaces -H "Authorization: Bearer \$TOKEN"

  Kubernetes: KUBECONFIG=$kubeconfig $kubectl get ws -n $namespace
  Press Ctrl-C to stop.

MSG
# Supervise: a service that exits is started again (its log says why);
# one that keeps exiting stops the platform.
set +e
declare -A first_restart=()
while :; do
  wait -n
  [ "$stopping" = yes ] && break
  for name in "${names[@]}"; do
    kill -0 "${pidof[$name]}" 2>/dev/null && continue
    now=$SECONDS
    if [ -z "${first_restart[$name]:-}" ] || [ $((now - first_restart[$name])) -gt 60 ]; then
      first_restart[$name]=$now
      restarts[$name]=0
    fi
    restarts[$name]=$((restarts[$name] + 1))
    if [ "${restarts[$name]}" -gt 5 ]; then
      log "$name exited 5 times within a minute; the end of its log:"
      tail -n 20 "$state/logs/$name.log" >&2
      exit 1
    fi
    log "$name exited (see $state/logs/$name.log); starting it again"
    launch "$name"
  done
done
