#!/usr/bin/env bash
# The tail cache, measured with spate-bench: two brokers of the same binary, one with the tail
# cache (default budget) and one with it off (--tail-cache-bytes 0), measured alternately in the
# same run. Broker pinned to CPU 0, generator to CPU 1. Prints `spate-bench compare` of each
# scenario (ratios B/A, A = cache off, B = cache on).
#
#   engine/benches/tail_cache.sh [ROUNDS]      (after cargo build --release)
#
# Scenarios:
#   e2e:     produce 1 KiB records at 150 MB/s (acks=all) while a consumer reads the tail.
#   recent:  write 48 MiB, then consume it from the beginning (fits in the 64 MiB cache).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SPATE="$ROOT/target/release/spate"
BENCH="$ROOT/target/release/spate-bench"
ROUNDS="${1:-2}"
OUT="${TAIL_CACHE_OUT:-$ROOT/target/tail-cache-bench}"
WORK="$(mktemp -d /var/tmp/spate-tail-cache.XXXXXX)"
mkdir -p "$OUT"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_broker() { # name port cache-bytes
    mkdir -p "$WORK/$1"
    taskset -c 0 "$SPATE" serve --data-dir "$WORK/$1" --listen "127.0.0.1:$2" --smp 1 \
        --tail-cache-bytes "$3" >"$WORK/$1.log" 2>&1 &
    pids+=($!)
    echo $! >"$WORK/$1.pid"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "broker $1 did not start:" >&2
    cat "$WORK/$1.log" >&2
    exit 1
}

start_broker off 19300 0
start_broker on 19400 67108864

for round in $(seq 1 "$ROUNDS"); do
    for name in off on; do
        port=$([ "$name" = off ] && echo 19300 || echo 19400)
        pid=$(cat "$WORK/$name.pid")
        "$BENCH" e2e --brokers "127.0.0.1:$port" --topic "e2e-$round" --rate 150MB/s \
            --duration 8 --warmup 2 --broker-pid "$pid" --cpus 1 --quiet \
            --json "$OUT/e2e-$name-$round.json" >/dev/null
        "$BENCH" produce --brokers "127.0.0.1:$port" --topic "recent-$round" \
            --total-bytes 48MiB --duration 30 --warmup 0 --cpus 1 --quiet >/dev/null
        "$BENCH" consume --brokers "127.0.0.1:$port" --topic "recent-$round" --from beginning \
            --until-caught-up --duration 30 --warmup 0 --broker-pid "$pid" --cpus 1 --quiet \
            --json "$OUT/recent-$name-$round.json" >/dev/null
    done
    for scenario in e2e recent; do
        echo "== $scenario, round $round (A = cache off, B = cache on)"
        "$BENCH" compare "$OUT/$scenario-off-$round.json" "$OUT/$scenario-on-$round.json"
    done
done
