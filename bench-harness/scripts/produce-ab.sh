#!/usr/bin/env bash
# Produce A/B: two `spate` binaries take turns on the same closed-loop produce load (1 KiB
# records, acks=all, every acknowledged batch fdatasync'ed), each round beside fio's O_DIRECT
# 1 MiB write+fdatasync bandwidth measured in the same round. Broker on CPU 0 with one shard,
# generator on CPU 1, a fresh data directory per run. Reports MB/s, the share of fio, broker
# CPU-seconds per GiB and latency, and, for binaries that count it, how many batch bytes were
# received in place (one copy) or copied.
#
# Usage: bench-harness/scripts/produce-ab.sh A_BIN B_BIN [OUT_DIR]
#   ROUNDS=3 SECONDS_MEASURED=10 PRODUCERS=4 PARTITIONS=$PRODUCERS BATCH_RECORDS=256
#   SETUP_A=... SETUP_B=...: a shell command run once the side's broker listens, before the
#   load, with $BROKERS set (e.g. SETUP_B='$B_BIN quota set --default-user
#   --producer-byte-rate 1e10 --brokers $BROKERS' measures a binary against itself with a
#   quota on; A_BIN and B_BIN may be the same).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench-harness/scripts/lib.sh"
prepare_ab produce-ab "$@"
ROUNDS="${ROUNDS:-3}"
SECONDS_MEASURED="${SECONDS_MEASURED:-10}"
PRODUCERS="${PRODUCERS:-4}"
PARTITIONS="${PARTITIONS:-$PRODUCERS}"
BATCH_RECORDS="${BATCH_RECORDS:-256}"

for round in $(seq "$ROUNDS"); do
    fio=$(fio_write_mb_s "$OUT" --bs=1M --iodepth=1 --fdatasync=1)
    for side in A B; do
        bin="$A_BIN"; [ "$side" = B ] && bin="$B_BIN"
        rm -rf "$BROKER_DATA"
        taskset -c 0 "$bin" serve --data-dir "$BROKER_DATA" --listen 127.0.0.1:29492 --smp 1 \
            --stats-listen 127.0.0.1:29493 2>>"$OUT/broker-$side.log" &
        BROKER_PID=$!
        wait_for_port 29492
        setup="SETUP_$side"
        if [ -n "${!setup:-}" ]; then
            BROKERS=127.0.0.1:29492 A_BIN="$A_BIN" B_BIN="$B_BIN" bash -c "${!setup}" \
                >>"$OUT/setup-$side.log" 2>&1
        fi
        taskset -c 1 "$BENCH" produce --brokers 127.0.0.1:29492 --topic ab \
            --partitions "$PARTITIONS" --producers "$PRODUCERS" --batch-records "$BATCH_RECORDS" \
            --record-size 1024 --acks all --duration "$SECONDS_MEASURED" --warmup 2 \
            --broker-pid "$BROKER_PID" --cpus 1 --quiet --json "$OUT/round$round-$side.json" >/dev/null
        curl -s http://127.0.0.1:29493/stats >"$OUT/round$round-$side-stats.json" || true
        stop_broker
        python3 - "$OUT/round$round-$side.json" "$OUT/round$round-$side-stats.json" "$fio" "$side" "$round" <<'PY'
import json, sys
run, fio = json.load(open(sys.argv[1])), float(sys.argv[3])
try:
    paths = json.load(open(sys.argv[2]))["shards"][0].get("produce_append_bytes", {})
except (ValueError, OSError, KeyError, IndexError):
    paths = {}
moved = " ".join(f"{path} {bytes / 1e9:.2f} GB" for path, bytes in paths.items())
l = run["latency_us"]
print(f"round {sys.argv[5]} {sys.argv[4]}: {run['throughput_mb_s']:.0f} MB/s = "
      f"{run['throughput_mb_s'] / fio:.2f} of fio sync {fio:.0f} MB/s; "
      f"broker {run['broker_cpu_s_per_gib']:.3f} CPU-s/GiB; p50 {l['p50'] / 1000:.1f} "
      f"p99 {l['p99'] / 1000:.1f} ms; errors {run['errors']}; {moved}")
PY
    done
done
