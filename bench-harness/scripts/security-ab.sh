#!/usr/bin/env bash
# The cost of security, in one run (issue 18's measurements): one `spate` binary with four
# listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), one shard on CPU 0, spate-bench on
# CPU 1, a fresh data directory and a SCRAM user per round. Each round, alternating which
# side goes first:
#   produce  ordinary settings (1 connection, 4 partitions, 64 x 1 KiB records per batch,
#            acks=all) over PLAINTEXT and over SASL_SSL (SCRAM-SHA-512): MB/s, broker and
#            generator CPU-s/GiB, latency;
#   fetch    a catch-up read of the PLAINTEXT run's backlog from offset 0 (page cache warmed
#            by one unmeasured read first, one connection per partition) over PLAINTEXT (splice) and SASL_SSL (read,
#            encrypted by rustls in user space, written): MB/s and CPU-s/GiB;
#   connect  $CONNECTIONS connections one after another per security setting, each until
#            its first request is answered: PLAINTEXT, SSL, SASL_PLAINTEXT with SCRAM-SHA-512,
#            SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512: set-up time and broker CPU
#            per connection.
# The certificates (an EC P-256 CA and server certificate for 127.0.0.1) are made here.
#
# Usage: bench-harness/scripts/security-ab.sh SPATE_BIN [OUT_DIR]
#   ROUNDS=3 SECONDS_MEASURED=10 CONNECTIONS=200; BENCH=path/to/spate-bench (default: the
#   release build of this tree)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench-harness/scripts/lib.sh"
SPATE="$(realpath "$1")"
OUT="${2:-$ROOT/target/bench/security-ab}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BENCH="${BENCH:-$ROOT/target/release/spate-bench}"
BROKER_DATA="$OUT/data"
trap stop_broker EXIT
ROUNDS="${ROUNDS:-3}"
SECONDS_MEASURED="${SECONDS_MEASURED:-10}"
CONNECTIONS="${CONNECTIONS:-200}"

CERTS="$OUT/certs"
mkdir -p "$CERTS"
(
    cd "$CERTS"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca \
        -addext basicConstraints=critical,CA:TRUE 2>/dev/null
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext 2>/dev/null
)

PLAINTEXT_PORT=29492 SSL_PORT=29494 SASL_PLAINTEXT_PORT=29496 SASL_SSL_PORT=29498
# Client properties per setting (the password is the bench user's, made below).
sasl() { echo "-X sasl.mechanism=$1 -X sasl.username=bench -X sasl.password=bench-secret"; }
TLS="-X ssl.ca.location=$CERTS/ca.pem"
declare -A SETTING=(
    [plaintext]="--brokers 127.0.0.1:$PLAINTEXT_PORT"
    [ssl]="--brokers 127.0.0.1:$SSL_PORT -X security.protocol=SSL $TLS"
    [sasl-plaintext-scram-512]="--brokers 127.0.0.1:$SASL_PLAINTEXT_PORT -X security.protocol=SASL_PLAINTEXT $(sasl SCRAM-SHA-512)"
    [sasl-ssl-plain]="--brokers 127.0.0.1:$SASL_SSL_PORT -X security.protocol=SASL_SSL $TLS $(sasl PLAIN)"
    [sasl-ssl-scram-256]="--brokers 127.0.0.1:$SASL_SSL_PORT -X security.protocol=SASL_SSL $TLS $(sasl SCRAM-SHA-256)"
    [sasl-ssl-scram-512]="--brokers 127.0.0.1:$SASL_SSL_PORT -X security.protocol=SASL_SSL $TLS $(sasl SCRAM-SHA-512)"
)
CONNECT_ORDER=(plaintext ssl sasl-plaintext-scram-512 sasl-ssl-plain sasl-ssl-scram-256 sasl-ssl-scram-512)

start() {
    rm -rf "$BROKER_DATA"
    "$SPATE" user add bench --password bench-secret --mechanism SCRAM-SHA-512 \
        --mechanism SCRAM-SHA-256 --data-dir "$BROKER_DATA" >/dev/null
    taskset -c 0 "$SPATE" serve --data-dir "$BROKER_DATA" --smp 1 \
        --listeners "PLAINTEXT://127.0.0.1:$PLAINTEXT_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PLAINTEXT_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT" \
        --ssl-cert "$CERTS/server.pem" --ssl-key "$CERTS/server.key" \
        --sasl-mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512 2>>"$OUT/broker.log" &
    BROKER_PID=$!
    wait_for_port "$PLAINTEXT_PORT"
    wait_for_port "$SASL_SSL_PORT"
}

summary() { # JSON-FILE LABEL
    python3 - "$1" "$2" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
l = run["latency_us"]
print(f"  {sys.argv[2]:<28} {run['throughput_mb_s']:7.1f} MB/s; broker {run['broker_cpu_s_per_gib']:.3f} "
      f"CPU-s/GiB, generator {run['generator_cpu_s_per_gib']:.3f}; p50 {l['p50'] / 1000:.1f} "
      f"p99 {l['p99'] / 1000:.1f} ms; errors {run['errors']}")
PY
}

for round in $(seq "$ROUNDS"); do
    echo "round $round"
    start
    order=(plaintext sasl-ssl-scram-512)
    [ $((round % 2)) = 0 ] && order=(sasl-ssl-scram-512 plaintext)
    for side in "${order[@]}"; do
        # shellcheck disable=SC2086 # the setting is words
        taskset -c 1 "$BENCH" produce ${SETTING[$side]} --topic "produce-$side" --partitions 4 \
            --producers 1 --batch-records 64 --record-size 1024 --acks all \
            --duration "$SECONDS_MEASURED" --warmup 2 --broker-pid "$BROKER_PID" --cpus 1 \
            --quiet --json "$OUT/round$round-produce-$side.json" >/dev/null
        summary "$OUT/round$round-produce-$side.json" "produce $side"
    done
    # The broker writes with O_DIRECT, so the backlog is not in the page cache yet: one read
    # first, not measured, so that neither side pays for the disk.
    taskset -c 1 "$BENCH" consume ${SETTING[plaintext]} --topic produce-plaintext --consumers 4 \
        --from beginning --until-caught-up --duration 120 --warmup 0 --quiet >/dev/null
    for side in "${order[@]}"; do
        # shellcheck disable=SC2086
        taskset -c 1 "$BENCH" consume ${SETTING[$side]} --topic produce-plaintext \
            --partitions 4 --consumers 4 --fetch-partition-max-bytes 4194304 --from beginning \
            --until-caught-up --duration 120 --warmup 0 --broker-pid "$BROKER_PID" --cpus 1 \
            --quiet --json "$OUT/round$round-fetch-$side.json" >/dev/null
        summary "$OUT/round$round-fetch-$side.json" "fetch $side"
    done
    for setting in "${CONNECT_ORDER[@]}"; do
        # shellcheck disable=SC2086
        line=$(taskset -c 1 "$BENCH" connect ${SETTING[$setting]} --count "$CONNECTIONS" \
            --broker-pid "$BROKER_PID" --json "$OUT/round$round-connect-$setting.json")
        printf '  connect %-24s %s\n' "$setting" "$line"
    done
    stop_broker
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(kind, side):
    return [json.load(open(f"{out}/round{r}-{kind}-{side}.json")) for r in range(1, rounds + 1)]
print("\nmedians over the rounds (SASL_SSL / PLAINTEXT):")
for kind in ("produce", "fetch"):
    plain, secure = load(kind, "plaintext"), load(kind, "sasl-ssl-scram-512")
    for key, unit in (("throughput_mb_s", "MB/s"), ("broker_cpu_s_per_gib", "broker CPU-s/GiB")):
        a = statistics.median(run[key] for run in plain)
        b = statistics.median(run[key] for run in secure)
        print(f"  {kind:<8} {unit:<17} PLAINTEXT {a:8.3f}  SASL_SSL {b:8.3f}  ratio {b / a:.2f}")
print("connection set-up to first answer, median of the rounds' medians:")
for setting in ("plaintext", "ssl", "sasl-plaintext-scram-512", "sasl-ssl-plain",
                "sasl-ssl-scram-256", "sasl-ssl-scram-512"):
    runs = load("connect", setting)
    p50 = statistics.median(run["p50_ms"] for run in runs)
    p99 = statistics.median(run["p99_ms"] for run in runs)
    cpu = statistics.median(run["broker_cpu_ms_per_connection"] for run in runs)
    print(f"  {setting:<26} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  broker CPU {cpu:5.2f} ms")
PY
