#!/usr/bin/env bash
# The suite against Spate, against Tansu and against a sink that discards (the generator's
# own ceiling), with the machine's limits, in one run; then a side-by-side table and
# picture per scenario. What BENCHMARKS.md reports.
#
# Each broker is pinned to CPU 0 (Spate with one shard), the load generator to CPU 1.
# Spate fdatasyncs every acknowledged batch; Tansu runs in memory (not durable), as
# ../shared/BENCHMARKS.md describes. Tansu's memory engine keeps every record in RAM, so it
# is restarted before each scenario (a whole suite would hold tens of GB).
#
# Usage: bench-harness/scripts/spate-vs-tansu.sh [OUT_DIR] [SUITE_FLAGS...]
#   OUT_DIR defaults to target/bench/spate-vs-tansu (on the disk under test, not tmpfs).
#   SUITE_FLAGS default to: --quick --repeat 3
#   BROKERS="spate tansu sink" (default) chooses what runs; TANSU=/opt/tansu/bin/tansu;
#   SKIP_BUILD=1 uses the binaries already in target/release.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/target/bench/spate-vs-tansu}"
shift || true
SUITE_FLAGS=("$@")
[ ${#SUITE_FLAGS[@]} -eq 0 ] && SUITE_FLAGS=(--quick --repeat 3)
BROKERS="${BROKERS:-spate tansu sink}"
TANSU="${TANSU:-/opt/tansu/bin/tansu}"
BROKER_CPU=0
GENERATOR_CPU=1
TANSU_SCENARIOS="latency-at-10pct latency-at-50pct latency-at-90pct producers-1 producers-10
    producers-100 keyed-100-partitions end-to-end"

. "$ROOT/bench-harness/scripts/lib.sh"
prepare_work

suite() { # broker, extra flags...
    local broker="$1"
    shift
    "$BENCH" suite --out "$OUT/$broker" --brokers "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" \
        --cpus "$GENERATOR_CPU" --label "$broker" --limits-dir "$WORK" "${SUITE_FLAGS[@]}" "$@"
}

echo "spate: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- engine storage net || echo ' plus uncommitted changes in engine/storage/net')"
echo "tansu: $("$TANSU" --version 2>/dev/null || echo absent)"
echo "host: $(nproc) CPUs, $(uname -r), data on $(df --output=source "$OUT" | tail -1)"
echo "broker on CPU $BROKER_CPU, generator on CPU $GENERATOR_CPU, suite flags: ${SUITE_FLAGS[*]}"

LIMITS_MEASURED=""
for broker in $BROKERS; do
    if [ "$broker" = tansu ] && [ ! -x "$TANSU" ]; then
        echo "skipping tansu: $TANSU is not installed" >&2
        continue
    fi
    # The limits are measured once, by the first suite, and kept beside every result.
    LIMITS=()
    if [ -n "$LIMITS_MEASURED" ]; then
        LIMITS=(--skip-limits)
        mkdir -p "$OUT/$broker"
        cp "$LIMITS_MEASURED" "$OUT/$broker/limits.json"
    fi
    case "$broker" in
    tansu)
        start_broker tansu
        suite tansu "${LIMITS[@]}" --only max-throughput
        stop_broker
        [ -n "$LIMITS_MEASURED" ] || LIMITS_MEASURED="$OUT/tansu/limits.json"
        MAX=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_per_s"])' \
            "$OUT/tansu/max-throughput.json")
        for scenario in $TANSU_SCENARIOS; do
            start_broker tansu
            suite tansu --skip-limits --only "$scenario" --max-records-per-s "$MAX"
            stop_broker
        done
        ;;
    sink)
        start_broker sink
        suite sink "${LIMITS[@]}" --only max-throughput,producers,keyed
        stop_broker
        ;;
    *)
        start_broker "$broker"
        suite "$broker" "${LIMITS[@]}"
        stop_broker
        ;;
    esac
    [ -n "$LIMITS_MEASURED" ] || LIMITS_MEASURED="$OUT/$broker/limits.json"
done

if [ -d "$OUT/spate" ] && [ -d "$OUT/tansu" ]; then
    for a in "$OUT"/spate/*.json; do
        name="$(basename "$a" .json)"
        b="$OUT/tansu/$name.json"
        [ "$name" = limits ] || [ ! -f "$b" ] && continue
        echo
        echo "## $name (A: spate, B: tansu)"
        echo
        "$BENCH" compare "$a" "$b" --labels spate,tansu --svg "$OUT/$name-spate-vs-tansu.svg"
    done | tee "$OUT/spate-vs-tansu.md"
fi
