#!/usr/bin/env bash
# Produce throughput, latency and broker CPU per GiB for 1 KiB records with acks=all,
# beside fio's O_DIRECT write bandwidth on the same disk, measured in the same run.
#
# The broker is pinned to CPU 0 with one shard, the load generator to CPU 1 (a 2-core host
# shares the CPU between them otherwise). Every acknowledged batch is fdatasync'ed.
#
# Then the same at half the 4-connection maximum, open loop, for the latency target.
#
# Usage: bench-harness/scripts/produce-vs-disk.sh [DATA_PARENT_DIR] [SECONDS]
# DATA_PARENT_DIR must be on the disk under test (not tmpfs); default: target/bench.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PARENT="${1:-$ROOT/target/bench}"
. "$ROOT/bench-harness/scripts/lib.sh" # fio_write_mb_s
SECONDS_MEASURED="${2:-10}"
BROKER_CPU=0
GENERATOR_CPU=1
PORT="${SPATE_BENCH_PORT:-29092}"

cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin spate --bin spate-bench >/dev/null
mkdir -p "$PARENT"
WORK="$(mktemp -d "$PARENT/run.XXXXXX")"
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "the broker exited during the run; its log:" >&2
        tail -20 "$WORK/broker.log" >&2
    fi
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "host: $(nproc) CPUs, $(uname -r), data on $(df --output=source "$PARENT" | tail -1)"
FIO_SYNC=$(fio_write_mb_s "$WORK" --bs=1M --iodepth=1 --fdatasync=1)
FIO_QD8=$(fio_write_mb_s "$WORK" --bs=1M --iodepth=8)
echo "fio O_DIRECT 1 MiB write + fdatasync (QD1): $FIO_SYNC MB/s"
echo "fio O_DIRECT 1 MiB write (QD8):             $FIO_QD8 MB/s"

taskset -c "$BROKER_CPU" "$ROOT/target/release/spate" serve --data-dir "$WORK/data" \
    --listen "127.0.0.1:$PORT" --smp 1 2>"$WORK/broker.log" &
BROKER_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

run() { # name, spate-bench args...
    local name="$1"
    shift
    "$ROOT/target/release/spate-bench" produce --brokers "127.0.0.1:$PORT" --record-size 1024 \
        --acks all --duration "$SECONDS_MEASURED" --warmup 2 --broker-pid "$BROKER_PID" \
        --cpus "$GENERATOR_CPU" --json "$WORK/$name.json" "$@" >/dev/null
    python3 - "$WORK/$name.json" "$name" "$FIO_SYNC" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); fio = float(sys.argv[3]); l = r["latency_us"]
print(f'{sys.argv[2]:<34} {r["throughput_mb_s"]:8.1f} MB/s ({r["throughput_mb_s"]/fio*100:5.1f}% of fio sync) '
      f'{r["records_per_s"]:10.0f} rec/s  p50 {l["p50"]} p99 {l["p99"]} p99.9 {l["p999"]} p99.99 {l["p9999"]} max {l["max"]} us  '
      f'CPU {r.get("broker_cpu_s_per_gib", float("nan")):.3f} s/GiB  errors {r["errors"]}')
PY
}

echo "spate, 1 KiB records, acks=all, fdatasync before every ack:"
run "1-conn-64KiB-batches" --topic one --partitions 1 --producers 1 --batch-records 64
run "4-conn-256KiB-batches" --topic four --partitions 4 --producers 4 --batch-records 256
# The latency target is at half the maximum just measured, open loop (latency from each
# request's intended send time), with the consumer-less produce path.
HALF=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput_mb_s"] / 2))' \
    "$WORK/4-conn-256KiB-batches.json")
run "4-conn-256KiB-at-half-${HALF}MB-s" --topic half --partitions 4 --producers 4 \
    --batch-records 256 --rate "${HALF}MB/s"
