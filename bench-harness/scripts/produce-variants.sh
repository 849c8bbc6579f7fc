#!/usr/bin/env bash
# Broker settings side by side, one `spate` binary: each round runs every variant on
# spate-bench's default produce (one connection, 4 partitions, 1 KiB records, acks=all; closed
# loop for 10 s), then every variant again open loop at RATE (default 250MB/s, about half the
# closed loop's rate on the reference host) for 15 s. Broker on CPU 0 with one shard,
# generator on CPU 1, a fresh data directory per run. Prints MB/s, broker CPU-s/GiB and the
# latency percentiles per run; the JSON of each run stays in OUT.
#
# Usage: bench-harness/scripts/produce-variants.sh SPATE_BIN OUT ROUNDS NAME='ARGS' ...
#   RATE=250MB/s CLOSED_SECONDS=10 OPEN_SECONDS=15
#   e.g. produce-variants.sh target/release/spate /tmp/zero 4 off='--log-zero-ahead-bytes 0' \
#        zero16m='--log-zero-ahead-bytes 16777216'
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench-harness/scripts/lib.sh"
SPATE_BIN="$1"
prepare_ab produce-variants "$SPATE_BIN" "$SPATE_BIN" "$2"
ROUNDS="$3"
shift 3
RATE="${RATE:-250MB/s}"
CLOSED_SECONDS="${CLOSED_SECONDS:-10}"
OPEN_SECONDS="${OPEN_SECONDS:-15}"

run() { # name args mode round
    local name="$1" args="$2" mode="$3" round="$4" load="--duration $CLOSED_SECONDS"
    [ "$mode" = open ] && load="--rate $RATE --duration $OPEN_SECONDS"
    rm -rf "$BROKER_DATA"
    # shellcheck disable=SC2086 # the variant's arguments are words
    taskset -c 0 "$SPATE_BIN" serve --data-dir "$BROKER_DATA" --listen 127.0.0.1:29492 --smp 1 \
        $args 2>>"$OUT/broker-$name.log" &
    BROKER_PID=$!
    wait_for_port 29492
    # shellcheck disable=SC2086
    taskset -c 1 "$BENCH" produce --brokers 127.0.0.1:29492 --topic variants --partitions 4 \
        --record-size 1024 --acks all $load --warmup 2 --broker-pid "$BROKER_PID" --cpus 1 \
        --quiet --json "$OUT/round$round-$mode-$name.json" >/dev/null
    stop_broker
    python3 - "$OUT/round$round-$mode-$name.json" "round $round $mode $name" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
latency = " ".join(f"{k} {v / 1000:.1f}" for k, v in run["latency_us"].items() if k.startswith("p"))
print(f"{sys.argv[2]}: {run['throughput_mb_s']:.0f} MB/s; broker "
      f"{run['broker_cpu_s_per_gib']:.3f} CPU-s/GiB; {latency} ms")
PY
}

for round in $(seq "$ROUNDS"); do
    for mode in closed open; do
        for variant in "$@"; do
            run "${variant%%=*}" "${variant#*=}" "$mode" "$round"
        done
    done
done
