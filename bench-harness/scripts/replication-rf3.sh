#!/usr/bin/env bash
# Usage: bench-harness/scripts/replication-rf3.sh   (SPATE=BIN ROUNDS=1 PRODUCERS=3 BATCH_RECORDS=256)
# RF=3 (min.insync.replicas=2) against RF=1 on three local single-shard nodes, acks=all,
# spate-bench as the generator; fio's 1 MiB write+fdatasync in the same run. All on one disk:
# RF=3 writes each byte three times, so a third of RF=1 is the ceiling. Each topic: as fast
# as possible, then open loop at half that rate (latency), with the three nodes' CPU-s/GiB
# in all and per replica (replicated-rounds.py).
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B=${SPATE:-$ROOT/target/release/spate}; BENCH=${BENCH:-$ROOT/target/release/spate-bench}
OUT=${OUT:-/tmp/spate-rf3}; rm -rf $OUT; mkdir -p $OUT
# A round writes about 12 GB at RF=1 and 3 x 4 GB at RF=3: the data goes at exit, and the
# nodes with it, whatever happens.
# Each run writes tens of GB: retention keeps what stays on disk to 1 GiB per replica.
RETENTION="--config retention.bytes=1073741824 --config segment.bytes=134217728"
trap 'pkill -9 -f "data-dir $OUT/d"; sleep 1; rm -rf "$OUT"/d1 "$OUT"/d2 "$OUT"/d3' EXIT
V="1@127.0.0.1:19401,2@127.0.0.1:19402,3@127.0.0.1:19403"
for n in 1 2 3; do
  $B serve --node-id $n --smp 1 --data-dir $OUT/d$n --listen 127.0.0.1:1950$n --controller-listen 127.0.0.1:1940$n --controller-quorum-voters $V > $OUT/n$n.log 2>&1 &
done
sleep 6
$B topic create r1 --partitions 3 --replication-factor 1 $RETENTION --brokers 127.0.0.1:19501 >/dev/null
$B topic create r3 --partitions 3 --replication-factor 3 --config min.insync.replicas=2 $RETENTION --brokers 127.0.0.1:19501 >/dev/null
sleep 2
for round in $(seq "${ROUNDS:-1}"); do
  fio=$(fio_write_mb_s $OUT --bs=1M --iodepth=1 --fdatasync=1)
  for t in r1 r3; do
    "$ROOT/bench-harness/scripts/replicated-rounds.py" "$BENCH" 127.0.0.1:19501 $t 3 "${t#r}" \
      "$fio" $OUT $round $(pgrep -f "data-dir $OUT/d")
  done
done
