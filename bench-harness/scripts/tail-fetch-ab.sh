#!/usr/bin/env bash
# Tail fetch A/B: two `spate` binaries take turns serving a consumer that reads what was
# written just before (768 MiB, all of it in a 1 GiB tail cache: enough bytes that the read
# lasts long enough to measure), beside loopback TCP bandwidth measured in the same round
# (`spate-bench limits`). Broker on CPU 0 with one shard, generator on CPU 1.
#
# Usage: bench-harness/scripts/tail-fetch-ab.sh A_BIN B_BIN [OUT_DIR]
#   ROUNDS=3 CONSUMERS=1 BACKLOG=768MiB CACHE_BYTES=1073741824
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench-harness/scripts/lib.sh"
prepare_ab tail-fetch-ab "$@"
ROUNDS="${ROUNDS:-3}"
CONSUMERS="${CONSUMERS:-1}"
BACKLOG="${BACKLOG:-768MiB}"
CACHE_BYTES="${CACHE_BYTES:-1073741824}"

for round in $(seq "$ROUNDS"); do
    taskset -c 1 "$BENCH" limits --dir "$OUT" --size-mib 256 --json "$OUT/limits-$round.json" >/dev/null
    for side in A B; do
        bin="$A_BIN"; [ "$side" = B ] && bin="$B_BIN"
        rm -rf "$BROKER_DATA"
        taskset -c 0 "$bin" serve --data-dir "$BROKER_DATA" --listen 127.0.0.1:29392 --smp 1 \
            --tail-cache-bytes "$CACHE_BYTES" 2>>"$OUT/broker-$side.log" &
        BROKER_PID=$!
        wait_for_port 29392
        taskset -c 1 "$BENCH" produce --brokers 127.0.0.1:29392 --topic recent --partitions 4 \
            --total-bytes "$BACKLOG" --duration 30 --warmup 0 --cpus 1 --quiet >/dev/null
        taskset -c 1 "$BENCH" consume --brokers 127.0.0.1:29392 --topic recent --partitions 4 \
            --consumers "$CONSUMERS" --from beginning --until-caught-up --duration 30 --warmup 0 \
            --broker-pid "$BROKER_PID" --cpus 1 --quiet --json "$OUT/round$round-$side.json" >/dev/null
        stop_broker
        python3 - "$OUT/round$round-$side.json" "$OUT/limits-$round.json" "$side" "$round" <<'PY'
import json, sys
run, limits = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
tcp = limits["tcp_loopback_mb_s"]
print(f"round {sys.argv[4]} {sys.argv[3]}: {run['throughput_mb_s']:.0f} MB/s = "
      f"{run['throughput_mb_s'] / tcp:.2f} of loopback TCP {tcp:.0f} MB/s; "
      f"broker {run['broker_cpu_s_per_gib']:.2f} CPU-s/GiB; fetch p50 {run['latency_us']['p50'] / 1000:.1f} ms")
PY
    done
done
