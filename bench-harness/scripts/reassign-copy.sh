#!/usr/bin/env bash
# Usage: bench-harness/scripts/reassign-copy.sh   (SPATE=BIN GIB=2 PARTITIONS=4 ROUNDS=1
#        NODE_ARGS="--replica-fetch-max-bytes 8388608")
# How fast a reassignment moves data: three local single-shard nodes, a topic of PARTITIONS
# partitions all on node 1 (RF=1), GIB GiB written to it with spate-bench, then every
# partition reassigned to node 2 (`spate cluster reassign --wait`): the new replicas fetch
# the whole log as followers (fdatasync'ed as they go), join the ISR, and node 1's copies
# are deleted. Reports the copy's MB/s beside fio's 1 MiB write+fdatasync in the same run
# (the page cache is dropped first, so the leader reads the log from the disk the follower
# writes to).
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B=${SPATE:-$ROOT/target/release/spate}; BENCH=${BENCH:-$ROOT/target/release/spate-bench}
OUT=${OUT:-/tmp/spate-reassign}; rm -rf $OUT; mkdir -p $OUT
GIB=${GIB:-2}; PARTITIONS=${PARTITIONS:-4}
trap 'pkill -9 -f "data-dir $OUT/d"; sleep 1; rm -rf "$OUT"/d1 "$OUT"/d2 "$OUT"/d3' EXIT
V="1@127.0.0.1:19411,2@127.0.0.1:19412,3@127.0.0.1:19413"
for n in 1 2 3; do
  $B serve --node-id $n --smp 1 --data-dir $OUT/d$n --listen 127.0.0.1:1951$n --controller-listen 127.0.0.1:1941$n --controller-quorum-voters $V ${NODE_ARGS:-} > $OUT/n$n.log 2>&1 &
done
for n in 1 2 3; do wait_for_port 1951$n; done
sleep 2
for round in $(seq "${ROUNDS:-1}"); do
  t=moving-$round
  assignment=$(printf '1024%.0s,' $(seq $PARTITIONS)); assignment=${assignment%,}
  $B topic create $t --replica-assignment $assignment --brokers 127.0.0.1:19511 >/dev/null
  "$BENCH" produce --brokers 127.0.0.1:19511 --topic $t --acks all --producers 1 \
    --total-bytes ${GIB}GiB --duration 600 --warmup 0 --quiet --json $OUT/produce-$round.json >/dev/null
  # The record payload written (batch headers and the active segment's preallocation are
  # left out, so the figure is payload moved per second).
  bytes=$((GIB * 1024 * 1024 * 1024))
  fio=$(fio_write_mb_s $OUT --bs=1M --iodepth=1 --fdatasync=1)
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  start=$(date +%s.%N)
  $B cluster reassign --topic $t --replicas 2048 --wait --brokers 127.0.0.1:19511 >/dev/null || { echo "reassignment failed"; exit 1; }
  end=$(date +%s.%N)
  # The old copies are deleted in the background once the reassignment is done.
  for _ in $(seq 100); do
    left=$(ls -d $OUT/d1/$t-* 2>/dev/null | wc -l); [ "$left" = 0 ] && break; sleep 0.1
  done
  python3 - "$bytes" "$start" "$end" "$fio" "$left" "$round" <<'PY'
import sys
size, start, end, fio, left, round_ = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
secs = end - start
mb_s = size / secs / 1e6
print(f"round {round_}: moved {size / 2**30:.2f} GiB of payload in {secs:.1f} s = {mb_s:.0f} MB/s "
      f"({mb_s / fio:.2f} of fio's {fio:.0f} MB/s); node 1 directories left: {left}")
PY
done
