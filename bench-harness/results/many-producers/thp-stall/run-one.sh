#!/usr/bin/env bash
# usage: run-one.sh BIN CONNECTIONS PARTITIONS TAG [WITH_MAX=0]
set -u
BIN=$1; CONN=$2; PARTS=$3; TAG=$4; WITH_MAX=${5:-0}
AB=/work/wt-stall/target/ab
OUT=$AB/out; mkdir -p $OUT
DATA=/work/wt-stall/target/bench-tmp/data-$TAG
rm -rf $DATA
nstat -az 2>/dev/null > $OUT/$TAG.nstat0
cp /proc/vmstat $OUT/$TAG.vmstat0
taskset -c 0 $BIN serve --data-dir $DATA --listen 127.0.0.1:29092 --smp 1 --stats-listen 127.0.0.1:29100 2>>$OUT/$TAG.broker.log &
PID=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/29092) 2>/dev/null && break; sleep 0.1; done
[ "${SAMPLE:-0}" = 1 ] && { taskset -c 1 python3 $AB/sampler.py $PID $OUT/$TAG.samples 14 & }
[ "${PERF:-0}" = 1 ] && { perf record -F 1999 -g -p $PID -o $OUT/$TAG.perf.data >/dev/null 2>&1 & PERFPID=$!; }
[ "${PSTAT:-0}" = 1 ] && { perf stat -e page-faults,minor-faults,task-clock -p $PID -o $OUT/$TAG.pstat >/dev/null 2>&1 & PSTATPID=$!; }
COMMON=(--record-size 1024 --acks all --max-in-flight 2 --duration 5 --warmup 1 --partitions $PARTS)
if [ "$WITH_MAX" = 1 ]; then
  timeout 120 taskset -c 1 $AB/spate-bench produce --brokers 127.0.0.1:29092 --broker-pid $PID --cpus 1 --quiet \
    --json $OUT/$TAG.max.json --topic max-$CONN --producers $CONN "${COMMON[@]}" >/dev/null 2>>$OUT/$TAG.bench.log
fi
timeout 120 taskset -c 1 $AB/spate-bench produce --brokers 127.0.0.1:29092 --broker-pid $PID --cpus 1 --quiet \
  --json $OUT/$TAG.json --interval-percentiles 1 --topic rate-$CONN --producers $CONN --rate 200MB/s "${COMMON[@]}" >/dev/null 2>>$OUT/$TAG.bench.log
echo "rc=$?" >> $OUT/$TAG.bench.log
[ "${PERF:-0}" = 1 ] && { kill -INT $PERFPID; wait $PERFPID; }
[ "${PSTAT:-0}" = 1 ] && { kill -INT $PSTATPID; wait $PSTATPID; }
curl -s 127.0.0.1:29100/stats > $OUT/$TAG.stats.json
nstat -az 2>/dev/null > $OUT/$TAG.nstat1
cp /proc/vmstat $OUT/$TAG.vmstat1
python3 - $OUT/$TAG.nstat0 $OUT/$TAG.nstat1 > $OUT/$TAG.nstat <<PY2
import sys
d=lambda f:{l.split()[0]:int(l.split()[1]) for l in open(f) if not l.startswith("#")}
a,b=d(sys.argv[1]),d(sys.argv[2])
for k in ["TcpExtListenOverflows","TcpExtListenDrops","TcpExtTCPSynRetrans","TcpRetransSegs","TcpExtTCPTimeouts"]: print(k,b.get(k,0)-a.get(k,0))
PY2
kill $PID; wait $PID 2>/dev/null
rm -rf $DATA
python3 - $OUT/$TAG.json <<'PY'
import json,sys
r=json.load(open(sys.argv[1])); l=r["latency_us"]
print(f"{sys.argv[1].split('/')[-1]}: {r['throughput_mb_s']:.0f} MB/s p50 {l['p50']/1000:.2f} p99 {l['p99']/1000:.2f} p99.9 {l['p999']/1000:.2f} p99.99 {l['p9999']/1000:.2f} max {l['max']/1000:.2f} errors {r['errors']}")
PY
python3 - $OUT/$TAG.vmstat0 $OUT/$TAG.vmstat1 <<PY3
import sys
d=lambda f:{l.split()[0]:int(l.split()[1]) for l in open(f)}
a,b=d(sys.argv[1]),d(sys.argv[2])
print(" ".join(f"{k}={b[k]-a[k]}" for k in b if (k.startswith("thp_") or k.startswith("compact_") or k in ("pgfault","pgfree","pgalloc_normal")) and b[k]-a[k]))
PY3
cat $OUT/$TAG.nstat | tr '\n' ';'; echo
