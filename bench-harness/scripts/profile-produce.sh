#!/usr/bin/env bash
# Where a produce request's broker CPU goes (issue 16, item 1): spate-bench's defaults (one
# connection, 5 requests in flight, a 64 KiB batch of 1 KiB records per partition, 4
# partitions, acks=all), broker on CPU 0 with one shard, generator on CPU 1; `perf record -e
# cpu-clock -g` of the broker process (its io_uring workers included) for 6 s in the middle
# of the run; each sample put in one category by its stack (profile-categories.py), and the
# categories turned into microseconds per 64 KiB batch from the run's CPU-s/GiB.
#
# Usage: bench-harness/scripts/profile-produce.sh SPATE_BIN [OUT_DIR]
#   PARTITIONS=4 BATCH_RECORDS=64 SECONDS_MEASURED=10
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench-harness/scripts/lib.sh"
BIN="$1"
OUT="${2:-$ROOT/target/bench/profile-produce}"
PARTITIONS="${PARTITIONS:-4}"
BATCH_RECORDS="${BATCH_RECORDS:-64}"
SECONDS_MEASURED="${SECONDS_MEASURED:-10}"
BENCH="$ROOT/target/release/spate-bench"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BROKER_DATA="$OUT/data"
trap stop_broker EXIT
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }

rm -rf "$BROKER_DATA"
taskset -c 0 "$BIN" serve --data-dir "$BROKER_DATA" --listen 127.0.0.1:29792 --smp 1 \
    2>>"$OUT/broker.log" &
BROKER_PID=$!
wait_for_port 29792
(sleep 4; perf record -e cpu-clock -F 4999 -g -p "$BROKER_PID" -o "$OUT/perf.data" -- sleep 6 \
    >/dev/null 2>&1) &
RECORDER=$!
taskset -c 1 "$BENCH" produce --brokers 127.0.0.1:29792 --topic profile \
    --partitions "$PARTITIONS" --producers 1 --batch-records "$BATCH_RECORDS" \
    --record-size 1024 --acks all --duration "$SECONDS_MEASURED" --warmup 2 \
    --broker-pid "$BROKER_PID" --cpus 1 --quiet --json "$OUT/run.json" >/dev/null
wait "$RECORDER"
stop_broker
perf script -i "$OUT/perf.data" -F comm,ip,sym 2>/dev/null >"$OUT/perf.txt"
python3 - "$OUT/run.json" "$BATCH_RECORDS" <<'PY' >"$OUT/per-batch-us"
import json, sys
run = json.load(open(sys.argv[1]))
batch_bytes = int(sys.argv[2]) * 1024
print(run["broker_cpu_s_per_gib"] * batch_bytes / 2**30 * 1e6)
PY
python3 - "$OUT/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print(f"{run['throughput_mb_s']:.0f} MB/s, broker {run['broker_cpu_s_per_gib']:.3f} CPU-s/GiB, "
      f"p50 {run['latency_us']['p50'] / 1000:.2f} ms, p99 {run['latency_us']['p99'] / 1000:.2f} ms")
PY
python3 "$ROOT/bench-harness/scripts/profile-categories.py" "$OUT/perf.txt" "$(cat "$OUT/per-batch-us")"
