#!/usr/bin/env bash
# The two long scenarios, in one run: a catch-up read of a large backlog from a cold page
# cache (Spate, then Tansu, each beside the disk's limits measured right before its read),
# and a soak of Spate with latency percentiles per minute. What BENCHMARKS.md reports under
# "Catch-up read" and "Soak".
#
# Broker on CPU 0 (Spate with one shard), generator on CPU 1. Needs root to drop the page
# cache (the result says when it could not). Tansu runs in memory, so its "backlog" is in
# RAM whatever the page cache holds, and it is not soaked (it would keep every record).
#
# Usage: bench-harness/scripts/catchup-and-soak.sh [OUT_DIR]
#   BACKLOG=4GiB SOAK_RATE=200MB/s SOAK_SECONDS=600 BROKERS="spate tansu" SKIP_SOAK=1
#   TANSU=/opt/tansu/bin/tansu SKIP_BUILD=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/target/bench/catchup-and-soak}"
BACKLOG="${BACKLOG:-4GiB}"
SOAK_RATE="${SOAK_RATE:-200MB/s}"
SOAK_SECONDS="${SOAK_SECONDS:-600}"
BROKERS="${BROKERS:-spate tansu}"
TANSU="${TANSU:-/opt/tansu/bin/tansu}"
BROKER_CPU=0
GENERATOR_CPU=1
# At most 1 GiB per partition, deleted a second after expiry: the soak cannot fill the disk.
SOAK_TOPIC_CONFIG="retention.bytes=1073741824,segment.bytes=134217728,file.delete.delay.ms=1000"

. "$ROOT/bench-harness/scripts/lib.sh"
prepare_work

bench() { # words... (logged)
    echo "== spate-bench $*" | tee -a "$OUT/commands.txt"
    taskset -c "$GENERATOR_CPU" "$BENCH" "$@"
}

echo "spate: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- engine storage net || echo ' plus uncommitted changes in engine/storage/net')"
echo "tansu: $("$TANSU" --version 2>/dev/null || echo absent)"
echo "broker on CPU $BROKER_CPU, generator on CPU $GENERATOR_CPU; backlog $BACKLOG; soak $SOAK_RATE for $SOAK_SECONDS s"

for broker in $BROKERS; do
    if [ "$broker" = tansu ] && [ ! -x "$TANSU" ]; then
        continue
    fi
    mkdir -p "$OUT/$broker"
    start_broker "$broker"
    bench catchup --brokers "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" --cpus "$GENERATOR_CPU" \
        --backlog "$BACKLOG" --partitions 4 --producers 4 --consumers 1 --fetch-max-wait-ms 10 \
        --limits-dir "$WORK" --quiet --json "$OUT/$broker/catch-up.json" \
        --svg "$OUT/$broker/catch-up.svg" || echo "$broker catch-up failed" | tee -a "$OUT/failures.txt"
    stop_broker
done
if [ -f "$OUT/spate/catch-up.json" ] && [ -f "$OUT/tansu/catch-up.json" ]; then
    "$BENCH" compare "$OUT/spate/catch-up.json" "$OUT/tansu/catch-up.json" --labels spate,tansu \
        --svg "$OUT/catch-up-spate-vs-tansu.svg" | tee "$OUT/catch-up-spate-vs-tansu.md"
fi

if [ "${SKIP_SOAK:-0}" != 1 ]; then
    start_broker spate
    bench soak --brokers "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" --cpus "$GENERATOR_CPU" \
        --topic soak --partitions 4 --producers 4 --record-size 1024 --acks all \
        --rate "$SOAK_RATE" --duration "$SOAK_SECONDS" --warmup 3 --interval-percentiles 60 \
        --topic-config "$SOAK_TOPIC_CONFIG" --quiet --json "$OUT/spate/soak.json" \
        --svg "$OUT/spate/soak.svg" || echo "spate soak failed" | tee -a "$OUT/failures.txt"
    echo "data directory at the end of the soak: $(du -sh "$WORK/spate-data" | cut -f1)"
    stop_broker
fi
