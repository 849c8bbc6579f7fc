#!/usr/bin/env bash
# Usage: bench-harness/scripts/replication-shards.sh   (SPATE=BIN ROUNDS=1 PRODUCERS=2 BATCH_RECORDS=256)
# RF=2 (min.insync.replicas=2) against RF=1 on ONE node with two shards (its replicas on
# both shards, the follower fetching from its leader's shard), acks=all, spate-bench as the
# generator, fio's 1 MiB write+fdatasync in the same run. One disk: RF=2 writes each byte
# twice, so half of RF=1 is the ceiling. Each topic: as fast as possible, then open loop at
# half that rate (latency), with the broker's CPU-s/GiB (replicated-rounds.py).
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B=${SPATE:-$ROOT/target/release/spate}; BENCH=${BENCH:-$ROOT/target/release/spate-bench}
OUT=${OUT:-/tmp/spate-rf-shards}; rm -rf $OUT; mkdir -p $OUT
# Each run writes tens of GB: retention keeps what stays on disk to 1 GiB per replica.
RETENTION="--config retention.bytes=1073741824 --config segment.bytes=134217728"
trap 'pkill -9 -f "data-dir $OUT/d"; sleep 1; rm -rf "$OUT"/d' EXIT
$B serve --smp 2 --data-dir $OUT/d --listen 127.0.0.1:19601 > $OUT/node.log 2>&1 &
PID=$!
wait_for_port 19601; wait_for_port 19602
$B topic create r1 --partitions 4 --replication-factor 1 $RETENTION --brokers 127.0.0.1:19601 >/dev/null
$B topic create r2 --partitions 4 --replication-factor 2 --config min.insync.replicas=2 $RETENTION --brokers 127.0.0.1:19601 >/dev/null
sleep 1
for round in $(seq "${ROUNDS:-1}"); do
  fio=$(fio_write_mb_s $OUT --bs=1M --iodepth=1 --fdatasync=1)
  for t in r1 r2; do
    PRODUCERS=${PRODUCERS:-2} "$ROOT/bench-harness/scripts/replicated-rounds.py" "$BENCH" 127.0.0.1:19601 \
      $t 4 "${t#r}" "$fio" $OUT $round $PID
  done
done
