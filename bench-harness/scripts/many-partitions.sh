#!/usr/bin/env bash
# Memory per partition, memory per connection, and start-up time of one shard holding many
# partitions (issue #7, "many partitions, many connections").
#
#   bench-harness/scripts/many-partitions.sh [PARTITIONS] [CONNECTIONS]
#
# Starts target/release/spate (or $SPATE_BIN; --smp 1, pinned to CPU 0) on a fresh data dir with
# --stats-listen, reads its RSS from /stats, creates a topic of PARTITIONS partitions and waits
# until the shard has opened them all, opens CONNECTIONS client connections (each sends one
# ApiVersions request and stays open), then restarts the broker and reads the start-up time
# it logs. Prints one JSON line, with the broker's open descriptors (/proc/PID/fd) before and
# after the partitions are opened. An idle partition holds 1 descriptor (its active segment's
# .log; 3 before the index files were closed): PARTITIONS + CONNECTIONS must stay below
# `ulimit -n`.
set -euo pipefail

PARTITIONS=${1:-5000}
CONNECTIONS=${2:-1000}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SPATE_BIN:-"$REPO/target/release/spate"}
PORT=${SPATE_BENCH_PORT:-19392}
STATS_PORT=$((PORT + 100))
DIR=$(mktemp -d -p "${SPATE_BENCH_TMP:-$REPO/target}" many-partitions.XXXXXX)
PID=""

cleanup() {
    [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

start_broker() {
    local runs_before
    runs_before=$(grep -c "spate is serving" "$DIR/broker.log" 2>/dev/null || true)
    taskset -c 0 "$BIN" serve --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --smp 1 \
        --stats-listen "127.0.0.1:$STATS_PORT" >>"$DIR/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 600); do
        if curl -sf "127.0.0.1:$STATS_PORT/stats" >/dev/null 2>&1 \
            && [[ $(grep -c "spate is serving" "$DIR/broker.log") -gt ${runs_before:-0} ]]; then
            return
        fi
        kill -0 "$PID" 2>/dev/null || { tail -20 "$DIR/broker.log"; exit 1; }
        sleep 0.1
    done
    echo "broker did not start" >&2
    exit 1
}

open_fds() { ls "/proc/$PID/fd" | wc -l; }

stat() { # stat FIELD: rss_bytes | partitions_open | connections_open
    curl -sf "127.0.0.1:$STATS_PORT/stats" | python3 -c "
import json, sys
stats = json.load(sys.stdin)
field = sys.argv[1]
print(stats[field] if field in stats else sum(shard[field] for shard in stats['shards']))" "$1"
}

start_broker
base_partitions=$(stat partitions_open)   # __consumer_offsets
rss_empty=$(stat rss_bytes)
fds_empty=$(open_fds)
created=$(date +%s.%N)
"$BIN" topic create many --partitions "$PARTITIONS" --brokers "127.0.0.1:$PORT" >/dev/null
want=$((base_partitions + PARTITIONS))
while [[ $(stat partitions_open) -lt $want ]]; do
    kill -0 "$PID" 2>/dev/null || { tail -20 "$DIR/broker.log"; exit 1; }
    sleep 0.2
done
opened=$(date +%s.%N)
rss_partitions=$(stat rss_bytes)
fds_partitions=$(open_fds)

# Connections: each sends ApiVersions v0 and reads the answer, then idles.
python3 - "$PORT" "$CONNECTIONS" "$STATS_PORT" "$DIR/conns.json" <<'EOF' &
import json, socket, struct, sys, time, urllib.request
port, count, stats_port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats"))["rss_bytes"]
before = rss()
sockets = []
request = struct.pack(">hhih", 18, 0, 1, 1) + b"m"
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(struct.pack(">i", len(request)) + request)
    size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    s.recv(size, socket.MSG_WAITALL)
    sockets.append(s)
time.sleep(1)
after = rss()
json.dump({"before": before, "after": after}, open(out, "w"))
time.sleep(2)
EOF
wait $!
conns_before=$(python3 -c "import json; print(json.load(open('$DIR/conns.json'))['before'])")
conns_after=$(python3 -c "import json; print(json.load(open('$DIR/conns.json'))['after'])")

kill -TERM "$PID"
wait "$PID" || true
restart_began=$(date +%s.%N)
start_broker
restarted=$(date +%s.%N)
startup_ms=$(grep "spate is serving" "$DIR/broker.log" | tail -1 | sed -E 's/.*startup_ms=([0-9]+).*/\1/')
[[ $(stat partitions_open) -ge $want ]] || echo "warning: not every partition open after restart" >&2
fds_restarted=$(open_fds)

python3 - <<EOF
import json
partitions, connections = $PARTITIONS, $CONNECTIONS
print(json.dumps({
    "partitions": partitions,
    "open_s": round($opened - $created, 2),
    "rss_empty_mib": round($rss_empty / 2**20, 1),
    "rss_with_partitions_mib": round($rss_partitions / 2**20, 1),
    "kib_per_partition": round(($rss_partitions - $rss_empty) / partitions / 1024, 1),
    "fds_empty": $fds_empty,
    "fds_with_partitions": $fds_partitions,
    "fds_per_partition": round(($fds_partitions - $fds_empty) / partitions, 2),
    "fds_after_restart": $fds_restarted,
    "connections": connections,
    "kib_per_connection": round(($conns_after - $conns_before) / connections / 1024, 1),
    "restart_to_serving_s": round($restarted - $restart_began, 2),
    "startup_ms_logged": int("$startup_ms" or 0),
}))
EOF
