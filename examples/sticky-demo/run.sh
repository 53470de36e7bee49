#!/usr/bin/env bash
# run.sh runs the sticky-demo on loopback: PODS counter pods (each a process
# with an engine.Server) and one client process sending calls for USERS users
# for DURATION, against a real Redis. After DRAIN_AFTER seconds it drains
# pod 1 (SIGTERM: DenyNewCall, hand-off of its users, Shutdown). It exits
# non-zero unless the client found every user's counter consistent and every
# pod stopped cleanly.
#
# It uses the Redis at $STICKYROUTE_REDIS_ADDR, or starts one with
# scripts/redis.sh for the length of the run.
#
#   examples/sticky-demo/run.sh                     # 3 pods, 120 users, 6s
#   PODS=4 USERS=300 DURATION=10s examples/sticky-demo/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PODS=${PODS:-3}
USERS=${USERS:-120}
DURATION=${DURATION:-6s}
DRAIN_AFTER=${DRAIN_AFTER:-2}

if [ -z "${STICKYROUTE_REDIS_ADDR:-}" ]; then
  exec "$top/scripts/redis.sh" run "$here/run.sh" "$@"
fi
[ "$PODS" -ge 2 ] || { echo "run.sh: PODS must be at least 2" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "sticky-demo: building"
(cd "$top/examples" && go build -o "$work/server" ./sticky-demo/server && go build -o "$work/client" ./sticky-demo/client)

ns="demo$RANDOM$RANDOM"
for i in $(seq 0 $((PODS - 1))); do
  "$work/server" -redis "$STICKYROUTE_REDIS_ADDR" -ns "$ns" -pod "$i" -addr-file "$work/pod$i.addr" &
  pids+=($!)
done
pods=""
for i in $(seq 0 $((PODS - 1))); do
  for _ in $(seq 1 100); do [ -s "$work/pod$i.addr" ] && break; sleep 0.1; done
  [ -s "$work/pod$i.addr" ] || { echo "sticky-demo: pod $i did not start" >&2; exit 1; }
  pods+="${pods:+,}$i=$(cat "$work/pod$i.addr")"
done
echo "sticky-demo: $PODS pods up ($pods); client: $USERS users for $DURATION"

"$work/client" -redis "$STICKYROUTE_REDIS_ADDR" -ns "$ns" -pods "$pods" -users "$USERS" -duration "$DURATION" &
client=$!
sleep "$DRAIN_AFTER"
echo "sticky-demo: draining pod 1"
kill -TERM "${pids[1]}"

rc=0
wait "$client" || rc=$?
drained=0
wait "${pids[1]}" || drained=$?
for i in $(seq 0 $((PODS - 1))); do
  [ "$i" = 1 ] || kill -TERM "${pids[$i]}"
done
others=0
for i in $(seq 0 $((PODS - 1))); do
  [ "$i" = 1 ] || wait "${pids[$i]}" || others=$?
done
pids=()
if [ "$rc" != 0 ] || [ "$drained" != 0 ] || [ "$others" != 0 ]; then
  echo "sticky-demo: FAIL (client $rc, drained pod $drained, other pods $others)" >&2
  exit 1
fi
echo "sticky-demo: OK"
