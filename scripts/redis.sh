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

# pick_port: a free port whose cluster bus port (+10000) is free too.
pick_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$((20000 + RANDOM % 25000))
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

# start NAME PORT [extra redis-server args...]
start() {
  local name=$1 port=$2
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
  wait_until "$name answers PING" redis-cli -h "$HOST" -p "$port" ping
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
  standalone=$(pick_port)
  start standalone "$standalone"

  for i in $(seq 1 $CLUSTER_MASTERS); do
    p=$(pick_port)
    start "cluster-$p" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 2000
    masters+=("$p")
    addrs+=("$HOST:$p")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $(tail -5 "$DIR/cluster-create.log")"
  wait_until "cluster_state:ok on every master" cluster_ok "${masters[@]}"

  local ha=() haaddrs=()
  for i in $(seq 1 $HA_NODES); do
    p=$(pick_port)
    start "ha-$p" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0
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
