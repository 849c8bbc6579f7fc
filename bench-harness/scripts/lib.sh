# What the benchmark scripts share; source it after setting ROOT, OUT, BROKER_CPU (and TANSU
# where Tansu runs):
#   prepare_work           build (unless SKIP_BUILD=1), make OUT absolute, create WORK inside it
#                          with copies of spate and spate-bench (a rebuild during the run does
#                          not change what is measured), BENCH=$WORK/spate-bench; at exit the
#                          broker is stopped and WORK removed.
#   start_broker KIND      spate | tansu | sink on CPU $BROKER_CPU -> BROKER_PID, PORT (Spate
#                          on a fresh data directory, Tansu in memory)
#   stop_broker            stop BROKER_PID, if any, and remove BROKER_DATA, if set
#   wait_for_port PORT     until something accepts on 127.0.0.1:PORT (20 s at most)
#   prepare_ab NAME A_BIN B_BIN [OUT]
#                          the A/B scripts' set-up: A_BIN, B_BIN, OUT (absolute; default
#                          target/bench/NAME), BENCH (the release spate-bench),
#                          BROKER_DATA=$OUT/data, and the broker stopped at exit
#   fio_write_mb_s DIR ARGS...
#                          fio's O_DIRECT sequential write bandwidth in DIR (2 GiB, io_uring,
#                          plus ARGS such as --bs=1M --fdatasync=1), in MB/s; installs fio first
#                          if it is missing, and removes its file after

BROKER_PID=""
BROKER_DATA=""
PORT=""

prepare_work() {
    [ "${SKIP_BUILD:-0}" = 1 ] ||
        cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin spate --bin spate-bench >/dev/null
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)" # the broker needs an absolute --data-dir
    WORK="$(mktemp -d "$OUT/work.XXXXXX")"
    cp "$ROOT/target/release/spate" "$WORK/spate"
    cp "$ROOT/target/release/spate-bench" "$WORK/spate-bench"
    BENCH="$WORK/spate-bench"
    trap 'stop_broker; rm -rf "$WORK"' EXIT
}

stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
    [ -z "$BROKER_DATA" ] || rm -rf "$BROKER_DATA"
}

wait_for_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

start_broker() {
    case "$1" in
    spate)
        BROKER_DATA="$WORK/spate-data"
        rm -rf "$BROKER_DATA"
        taskset -c "$BROKER_CPU" "$WORK/spate" serve --data-dir "$BROKER_DATA" \
            --listen 127.0.0.1:29092 --smp 1 2>>"$OUT/spate.log" &
        PORT=29092
        ;;
    tansu)
        taskset -c "$BROKER_CPU" "$TANSU" broker --listener-url tcp://127.0.0.1:19092 \
            --advertised-listener-url tcp://127.0.0.1:19092 \
            --storage-engine memory://tansu/ >>"$OUT/tansu.log" 2>&1 &
        PORT=19092
        ;;
    sink)
        taskset -c "$BROKER_CPU" "$BENCH" sink --listen 127.0.0.1:29999 2>>"$OUT/sink.log" &
        PORT=29999
        ;;
    esac
    BROKER_PID=$!
    wait_for_port "$PORT"
}

prepare_ab() {
    local name="$1"
    A_BIN="$2"
    B_BIN="$3"
    OUT="${4:-$ROOT/target/bench/$name}"
    BENCH="$ROOT/target/release/spate-bench"
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)" # the broker needs an absolute --data-dir
    BROKER_DATA="$OUT/data"
    trap stop_broker EXIT
}

fio_write_mb_s() {
    local dir="$1"
    shift
    # apt's output goes to stderr: stdout carries the figure.
    command -v fio >/dev/null || { apt-get update -q && apt-get install -y -q fio; } >&2
    fio --name=disk --directory="$dir" --size=2G --direct=1 --ioengine=io_uring --rw=write \
        --output-format=json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6, 1))'
    rm -f "$dir"/disk.*
}
