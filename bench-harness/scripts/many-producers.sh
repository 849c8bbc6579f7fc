#!/usr/bin/env bash
# Many producer connections (1, 10, 100, 1000) against the sink (the generator's own
# ceiling), Spate and Tansu, interleaved: for each connection count every broker runs in
# turn, so a noisy minute on this shared host hits all of them alike. With the machine's
# limits measured first, in the same run. What BENCHMARKS.md reports under "Many producer
# connections".
#
# For each connection count and broker: the maximum (closed loop, --max-in-flight 2) and an
# open-loop run at the same offered rate for every broker (RATE). 10 partitions, 1 KiB
# records, 64 per batch, acks=all. Broker (and sink) on CPU 0, generator on CPU 1.
#
# Each run is repeated REPEAT times (each time on a fresh broker, the brokers taking turns);
# the run with the median throughput (maximum) or median p99 (fixed rate) is kept.
#
# Usage: bench-harness/scripts/many-producers.sh [OUT_DIR]
#   RATE=200MB/s DURATION=5 REPEAT=3 CONNECTIONS="1 10 100 1000" BROKERS="sink spate tansu"
#   TANSU=/opt/tansu/bin/tansu SKIP_BUILD=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/target/bench/many-producers}"
RATE="${RATE:-200MB/s}"
DURATION="${DURATION:-5}"
REPEAT="${REPEAT:-3}"
CONNECTIONS="${CONNECTIONS:-1 10 100 1000}"
BROKERS="${BROKERS:-sink spate tansu}"
TANSU="${TANSU:-/opt/tansu/bin/tansu}"
BROKER_CPU=0
GENERATOR_CPU=1

. "$ROOT/bench-harness/scripts/lib.sh"
prepare_work

produce() { # broker, name, flags...
    local broker="$1" name="$2"
    shift 2
    mkdir -p "$OUT/$broker"
    echo "== $broker $name: spate-bench produce $*" | tee -a "$OUT/commands.txt"
    taskset -c "$GENERATOR_CPU" "$BENCH" produce --brokers "127.0.0.1:$PORT" \
        --broker-pid "$BROKER_PID" --cpus "$GENERATOR_CPU" --quiet \
        --json "$OUT/$broker/$name.json" "$@" ||
        echo "$broker $name failed" | tee -a "$OUT/failures.txt"
}

echo "spate: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- engine storage net || echo ' plus uncommitted changes in engine/storage/net')"
echo "tansu: $("$TANSU" --version 2>/dev/null || echo absent)"
echo "broker on CPU $BROKER_CPU, generator on CPU $GENERATOR_CPU; rate $RATE; $DURATION s runs, $REPEAT of each"
"$BENCH" limits --dir "$WORK" --size-mib 1024 --json "$OUT/limits.json"

COMMON=(--partitions 10 --record-size 1024 --acks all --max-in-flight 2 --duration "$DURATION" --warmup 1)
median() { # KEY FILES... -> copies the file with the median KEY to the name without .rN
    python3 - "$@" <<'EOF'
import json, shutil, sys
key, files = sys.argv[1], sys.argv[2:]
def value(path):
    result = json.load(open(path))
    return result["throughput_mb_s"] if key == "throughput" else result["latency_us"]["p99"]
runs = sorted((value(path), path) for path in files)
keep = runs[len(runs) // 2][1]
shutil.copy(keep, keep.rsplit(".r", 1)[0] + ".json")
EOF
}

for connections in $CONNECTIONS; do
    for round in $(seq "$REPEAT"); do
        for broker in $BROKERS; do
            if [ "$broker" = tansu ] && [ ! -x "$TANSU" ]; then
                continue
            fi
            # A fresh broker for each run: Tansu keeps every record in memory.
            start_broker "$broker"
            produce "$broker" "max-$connections.r$round" --topic "max-$connections" \
                --producers "$connections" "${COMMON[@]}"
            produce "$broker" "rate-$connections.r$round" --topic "rate-$connections" \
                --producers "$connections" --rate "$RATE" "${COMMON[@]}"
            stop_broker
        done
    done
    for broker in $BROKERS; do
        ls "$OUT/$broker/max-$connections".r*.json >/dev/null 2>&1 || continue
        median throughput "$OUT/$broker/max-$connections".r*.json
        median p99 "$OUT/$broker/rate-$connections".r*.json
    done
    if [ -f "$OUT/spate/rate-$connections.json" ] && [ -f "$OUT/tansu/rate-$connections.json" ]; then
        "$BENCH" compare "$OUT/spate/rate-$connections.json" "$OUT/tansu/rate-$connections.json" \
            --labels spate,tansu --svg "$OUT/producers-$connections-at-rate-spate-vs-tansu.svg" \
            >"$OUT/rate-$connections-spate-vs-tansu.md"
    fi
done

python3 - "$OUT" "$RATE" <<'EOF' | tee "$OUT/many-producers.md"
import json, os, sys
out, rate = sys.argv[1], sys.argv[2]
def load(broker, name):
    try:
        return json.load(open(os.path.join(out, broker, name + ".json")))
    except OSError:
        return None
limits = json.load(open(os.path.join(out, "limits.json")))
print(f"Limits (same run): O_DIRECT write {limits['direct_write_mb_s']:.0f} MB/s, write+fdatasync "
      f"{limits['direct_write_fdatasync_mb_s']:.0f} MB/s, TCP loopback {limits['tcp_loopback_mb_s']:.0f} MB/s.\n")
counts = sorted({int(name.split('-')[1].split('.')[0]) for broker in ("sink", "spate", "tansu")
                 if os.path.isdir(os.path.join(out, broker))
                 for name in os.listdir(os.path.join(out, broker))
                 if name.startswith("max-") and ".r" not in name})
print("| connections | sink max MB/s (p99 ms) | generator CPU s/GiB, % of a core | generator ceiling, one core, MB/s | Spate max MB/s (p99 ms), broker % of a core | Tansu max MB/s (p99 ms), broker % of a core | ceiling / Spate | ceiling / Tansu |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
def cell(result, with_cpu=False):
    if result is None:
        return "-"
    text = f"{result['throughput_mb_s']:,.0f} ({result['latency_us']['p99'] / 1000:.1f})"
    if with_cpu and result.get("broker_cpu_s") is not None:
        text += f", {result['broker_cpu_s'] / result['measured_s'] * 100:.0f}%"
    return text
def ceiling(result):
    # One core divided by the generator's CPU per GiB: what it could offer alone.
    per_gib = None if result is None else result.get("generator_cpu_s_per_gib")
    return None if not per_gib else (1 << 30) / 1e6 / per_gib
def ratio(a, b):
    return "-" if a is None or b is None or not b["throughput_mb_s"] else f"{a / b['throughput_mb_s']:.1f}"
for n in counts:
    sink, spate, tansu = (load(b, f"max-{n}") for b in ("sink", "spate", "tansu"))
    top = ceiling(sink)
    generator = "-" if sink is None or sink.get("generator_cpu_s") is None else \
        f"{sink['generator_cpu_s_per_gib']:.3f}, {sink['generator_cpu_s'] / sink['measured_s'] * 100:.0f}%"
    print(f"| {n} | {cell(sink)} | {generator} | {'-' if top is None else f'{top:,.0f}'} | "
          f"{cell(spate, True)} | {cell(tansu, True)} | {ratio(top, spate)} | {ratio(top, tansu)} |")
print(f"\nAt the same offered rate, {rate}, open loop (latency from the intended send time), ms:\n")
print("| connections | broker | MB/s | p50 | p99 | p99.9 | p99.99 | max | CPU s/GiB | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in counts:
    for broker in ("sink", "spate", "tansu"):
        result = load(broker, f"rate-{n}")
        if result is None:
            continue
        latency = result["latency_us"]
        cpu = result.get("broker_cpu_s_per_gib")
        print(f"| {n} | {broker} | {result['throughput_mb_s']:,.0f} | {latency['p50'] / 1000:.2f} | "
              f"{latency['p99'] / 1000:.2f} | {latency['p999'] / 1000:.2f} | {latency['p9999'] / 1000:.2f} | "
              f"{latency['max'] / 1000:.2f} | {'-' if cpu is None else f'{cpu:.2f}'} | {result['errors']} |")
EOF
