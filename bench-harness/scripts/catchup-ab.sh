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
. "$ROOT/bench-harness/scripts/lib.sh"
prepare_ab catchup-ab "$@"
ROUNDS="${ROUNDS:-2}"
BACKLOG="${BACKLOG:-4GiB}"
CONSUMERS="${CONSUMERS:-1}"
SEGMENT_BYTES="${SEGMENT_BYTES:-268435456}"

for round in $(seq "$ROUNDS"); do
    for side in A B; do
        bin="$A_BIN"; [ "$side" = B ] && bin="$B_BIN"
        rm -rf "$BROKER_DATA"
        taskset -c 0 "$bin" serve --data-dir "$BROKER_DATA" --listen 127.0.0.1:29192 --smp 1 \
            --segment-bytes "$SEGMENT_BYTES" 2>>"$OUT/broker-$side.log" &
        BROKER_PID=$!
        wait_for_port 29192
        json="$OUT/round$round-$side.json"
        taskset -c 1 "$BENCH" catchup --brokers 127.0.0.1:29192 --broker-pid "$BROKER_PID" --cpus 1 \
            --backlog "$BACKLOG" --partitions 4 --producers 4 --consumers "$CONSUMERS" \
            --fetch-max-wait-ms 10 --limits-dir "$OUT" --quiet --json "$json" >/dev/null
        stop_broker
        python3 - "$json" "$side" "$round" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
facts, limits, latency = run["catchup"], run.get("limits") or {}, run["latency_us"]
print(f"round {sys.argv[3]} {sys.argv[2]}: {run['throughput_mb_s']:.0f} MB/s = "
      f"{facts.get('share_of_direct_read') or 0:.3f} of O_DIRECT read {limits.get('direct_read_mb_s', 0):.0f} MB/s; "
      f"broker {run['broker_cpu_s_per_gib']:.2f} CPU-s/GiB; fetch p50/p99 {latency['p50'] / 1000:.1f}/{latency['p99'] / 1000:.1f} ms")
PY
    done
done
