#!/usr/bin/env bash
# redis.sh starts and stops the Redis servers the tests run against:
# one standalone server and a Redis Cluster of 3 masters, all on loopback,
# on free ports picked at start-up; and a second cluster of 3 masters with one
# replica each, for the failover tests that kill and restart its nodes (so the
# first cluster, which every other test shares, is never disturbed). It never touches a server it did not start
# (a Redis already listening on 6379 is left alone).
#
#   scripts/redis.sh up     start the servers, write their addresses to $DIR/env
#   scripts/redis.sh down   stop exactly the processes "up" started
#   scripts/redis.sh env    print the addresses (shell syntax, for eval/source)
#   scripts/redis.sh run CMD...
#                           up, run CMD with the addresses exported (and
#                           STICKYROUTE_REQUIRE_SERVERS=1, so no test skips a tier),
#                           then down even when CMD fails; exits with CMD's status
#
# DIR defaults to .redis/ at the top of the repository (STICKYROUTE_REDIS_DIR overrides).
# The env file exports:
#   STICKYROUTE_REDIS_ADDR      host:port of the standalone server
#   STICKYROUTE_CLUSTER_ADDRS   host:port,host:port,host:port of the cluster masters
#   STICKYROUTE_HA_CLUSTER_ADDRS
#                               host:port of the 6 nodes of the cluster with replicas
#   STICKYROUTE_HA_CLUSTER_DIR  its nodes' directories, $DIR/ha-<port>/: redis.pid
#                               (the running process) and args (the redis-server
#                               arguments, one a line, to start the node again)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
DIR=${STICKYROUTE_REDIS_DIR:-$top/.redis}
HOST=127.0.0.1
CLUSTER_MASTERS=3
HA_NODES=6 # 3 masters, 3 replicas

log() { printf 'redis.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

find_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "redis-server not found; installing Debian's redis-server package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq redis-server >&2 ||
      die "apt-get install redis-server failed"
    # The package may start its own service on 6379; that server is not ours and is left as it is.
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install"
  else
    die "redis-server and redis-cli are needed: install Debian's redis-server package (or run as root to let this script do it)"
  fi
}

# port_free P: true when nothing listens on 127.0.0.1:P.
port_free() {
  ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# pick_port: a free port whose cluster bus port (+10000) is free too. Both
# lie below the kernel's ephemeral range when there is room, so that no
# outgoing connection of the tests can hold one of them when its server binds.
pick_port() {
  local p tries=0 eph=32768 base=20000 span=25000
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ $((eph - 10001)) -gt 11000 ]; then
    base=10000 span=$((eph - 10001 - 10000))
  fi
  while [ $tries -lt 200 ]; do
    p=$((base + RANDOM % span))
    tries=$((tries + 1))
    grep -qx "$p" "$DIR/ports" 2>/dev/null && continue
    if port_free "$p" && port_free $((p + 10000)); then
      echo "$p" >>"$DIR/ports"
      echo "$p"
      return
    fi
  done
  die "no free port found after $tries tries"
}

# start NAME PORT [extra redis-server args...]: starts a server and waits
# until it answers PING. It fails (status 1) when the server exits because
# its port was taken after pick_port looked; it dies on any other failure.
start() {
  local name=$1 port=$2 i
  shift 2
  mkdir -p "$DIR/$name"
  local args=(--bind "$HOST" --port "$port" --protected-mode no
    --save '' --appendonly no --daemonize yes
    --dir "$DIR/$name" --pidfile "$DIR/$name/redis.pid" --logfile "$DIR/$name/redis.log"
    "$@")
  # Kept so that a test can start a node it killed again, exactly as before.
  printf '%s\n' "${args[@]}" >"$DIR/$name/args"
  redis-server "${args[@]}" >/dev/null || die "redis-server $name on port $port did not start (see $DIR/$name/redis.log)"
  # A started process is recorded at once, so "down" can stop it even if we fail below.
  echo "$name $port" >>"$DIR/started"
  local pid answering
  for i in $(seq 1 300); do
    if grep -qs 'Address already in use' "$DIR/$name/redis.log"; then
      return 1
    fi
    # Ours answers, not another server that took the port meanwhile.
    pid=$(cat "$DIR/$name/redis.pid" 2>/dev/null || true)
    answering=$(redis-cli -h "$HOST" -p "$port" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
    if [ -n "$pid" ] && [ "$answering" = "$pid" ]; then
      return 0
    fi
    sleep 0.1
  done
  die "timed out waiting until $name answers PING (see $DIR/$name/redis.log)"
}

# start_free PREFIX [extra redis-server args...]: starts a server on a port
# pick_port picks, trying another port when that one was taken meanwhile,
# and prints the port. The server is named PREFIX, or PREFIX-PORT for a
# cluster node ("cluster", "ha").
start_free() {
  local prefix=$1 p name try
  shift
  for try in 1 2 3 4 5; do
    p=$(pick_port) || exit 1
    name=$prefix
    [ "$prefix" = standalone ] || name="$prefix-$p"
    if start "$name" "$p" "$@"; then
      echo "$p"
      return 0
    fi
    log "$name: port $p was taken before the server bound it; trying another port"
  done
  die "no server of $prefix could bind a port in $try tries"
}

# wait_until WHAT CMD...: polls CMD (output must not be empty or an error) for up to 30 s.
wait_until() {
  local what=$1 i
  shift
  for i in $(seq 1 300); do
    if out=$("$@" 2>/dev/null) && [ -n "$out" ] && [[ $out != *ERR* ]] && [[ $out != *LOADING* ]]; then
      return 0
    fi
    sleep 0.1
  done
  die "timed out waiting until $what"
}

cluster_ok() {
  local p
  for p in "$@"; do
    redis-cli -h "$HOST" -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
  echo ok
}

# replicas_synced PORT...: every replica among the nodes has its master link up.
replicas_synced() {
  local p n=0
  for p in "$@"; do
    if redis-cli -h "$HOST" -p "$p" info replication 2>/dev/null | grep -q '^role:slave'; then
      redis-cli -h "$HOST" -p "$p" info replication | grep -q '^master_link_status:up' || return 1
      n=$((n + 1))
    fi
  done
  [ "$n" -eq $((HA_NODES / 2)) ] && echo ok
}

up() {
  find_redis
  if [ -f "$DIR/started" ]; then
    log "servers from an earlier run are recorded in $DIR; stopping them first"
    down
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  : >"$DIR/ports"

  local standalone masters=() addrs=() p i
  standalone=$(start_free standalone) || exit 1

  for i in $(seq 1 $CLUSTER_MASTERS); do
    p=$(start_free cluster --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 2000) || exit 1
    masters+=("$p")
    addrs+=("$HOST:$p")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $(tail -5 "$DIR/cluster-create.log")"
  wait_until "cluster_state:ok on every master" cluster_ok "${masters[@]}"

  local ha=() haaddrs=()
  for i in $(seq 1 $HA_NODES); do
    p=$(start_free ha --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0) || exit 1
    ha+=("$p")
    haaddrs+=("$HOST:$p")
  done
  redis-cli --cluster create "${haaddrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/ha-create.log" 2>&1 ||
    die "redis-cli --cluster create (with replicas) failed: $(tail -5 "$DIR/ha-create.log")"
  wait_until "cluster_state:ok on every node of the cluster with replicas" cluster_ok "${ha[@]}"
  wait_until "every replica in sync" replicas_synced "${ha[@]}"

  local joined hajoined
  joined=$(IFS=,; echo "${addrs[*]}")
  hajoined=$(IFS=,; echo "${haaddrs[*]}")
  cat >"$DIR/env" <<EOF
export STICKYROUTE_REDIS_ADDR=$HOST:$standalone
export STICKYROUTE_CLUSTER_ADDRS=$joined
export STICKYROUTE_HA_CLUSTER_ADDRS=$hajoined
export STICKYROUTE_HA_CLUSTER_DIR=$DIR
EOF
  log "standalone $HOST:$standalone; cluster $joined; cluster with replicas $hajoined"
  cat "$DIR/env"
}

down() {
  [ -f "$DIR/started" ] || { log "nothing recorded in $DIR; nothing to stop"; return 0; }
  local name port pid i
  while read -r name port; do
    pid=$(cat "$DIR/$name/redis.pid" 2>/dev/null || true)
    # Stop only the process we started: the pid must still be a redis-server on our port.
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$port"; then
      kill "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
  done <"$DIR/started"
  rm -rf "$DIR"
  log "stopped"
}

run() {
  [ $# -gt 0 ] || die "usage: $0 run CMD..."
  trap down EXIT
  trap 'exit 130' INT TERM
  up >/dev/null
  # shellcheck disable=SC1091
  . "$DIR/env"
  export STICKYROUTE_REQUIRE_SERVERS=1
  local rc=0
  "$@" || rc=$?
  return $rc
}

case "${1:-}" in
up) up ;;
run) shift; run "$@" ;;
down) down ;;
env) cat "$DIR/env" ;;
*) die "usage: $0 up|down|env|run CMD..." ;;
esac
