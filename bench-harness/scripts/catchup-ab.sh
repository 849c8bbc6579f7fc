#!/usr/bin/env bash
# Catch-up read A/B: two `spate` binaries take turns reading the same kind of cold backlog
# (`spate-bench catchup`, page cache dropped before each read, O_DIRECT read bandwidth measured
# in the same round), so a change to the fetch path is judged by a ratio from one session.
#
# Broker on CPU 0 with one shard, generator on CPU 1. Needs root (drops the page cache).
#
# Usage: bench-harness/scripts/catchup-ab.sh A_BIN B_BIN [OUT_DIR]
#   ROUNDS=2 BACKLOG=4GiB CONSUMERS=1 SEGMENT_BYTES=268435456 (segments small enough that
#   the backlog is mostly in sealed segments, as a long backlog is)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
A_BIN="$1"
B_BIN="$2"
OUT="${3:-$ROOT/target/bench/catchup-ab}"
ROUNDS="${ROUNDS:-2}"
BACKLOG="${BACKLOG:-4GiB}"
CONSUMERS="${CONSUMERS:-1}"
SEGMENT_BYTES="${SEGMENT_BYTES:-268435456}"
BENCH="$ROOT/target/release/spate-bench"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="$OUT/data"
PID=""
stop() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi
    rm -rf "$DATA"
}
trap stop EXIT

for round in $(seq "$ROUNDS"); do
    for side in A B; do
        bin="$A_BIN"; [ "$side" = B ] && bin="$B_BIN"
        rm -rf "$DATA"
        taskset -c 0 "$bin" serve --data-dir "$DATA" --listen 127.0.0.1:29192 --smp 1 \
            --segment-bytes "$SEGMENT_BYTES" 2>>"$OUT/broker-$side.log" &
        PID=$!
        for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/29192) 2>/dev/null && break; sleep 0.1; done
        json="$OUT/round$round-$side.json"
        taskset -c 1 "$BENCH" catchup --brokers 127.0.0.1:29192 --broker-pid "$PID" --cpus 1 \
            --backlog "$BACKLOG" --partitions 4 --producers 4 --consumers "$CONSUMERS" \
            --fetch-max-wait-ms 10 --limits-dir "$OUT" --quiet --json "$json" >/dev/null
        stop
        python3 - "$json" "$side" "$round" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
def find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                return v
            found = find(v, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for v in node:
            found = find(v, key)
            if found is not None:
                return found
    return None
print(f"round {sys.argv[3]} {sys.argv[2]}: " + json.dumps({k: find(doc, k) for k in
      ["read_mb_per_s", "read_share_of_o_direct", "o_direct_read_mb_per_s", "broker_cpu_s_per_gib"]}))
PY
    done
done
