#!/usr/bin/env bash
# Spate's whole test suite, from a fresh Debian machine (run as root) to a verdict:
#   1. install what is missing: kcat, promtool, nft, Go and Sarama's sources, Burrow and
#      ZooKeeper (always), and
#      python3/pip/venv, node/npm only if absent;
#   2. the Python clients in ci/.venv (ci/requirements.txt), kafka-python 3 in
#      ci/.venv-kafka-python3 (ci/requirements-kafka-python3.txt), kafkajs in ci/node (npm ci);
#   3. cargo build --release, cargo test --workspace --profile ci-test;
#   4. pytest ci/compat: real clients against real `target/release/spate` processes (the
#      client tests first once more with fetches served from sealed segments by splice).
# Any failing step stops the run with a message naming it, and the exit code is non-zero.
#
# Arguments are passed to pytest, e.g. `ci/test.sh -k kcat` or `ci/test.sh -x`.
# SPATE_CI_SKIP_CARGO=1 skips the cargo build and tests (for iterating on the Python suite).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI_DIR="$REPO_ROOT/ci"
VENV="$CI_DIR/.venv"
PYTEST_TIMEOUT_S=300
# The bound on the Rust tests, once built (they take a fraction of it on 2 cores).
CARGO_TEST_TIMEOUT_S="${SPATE_CARGO_TEST_TIMEOUT_S:-1800}"
START_S=$SECONDS

# Each step says how long the run has taken so far, so that a slow step shows in CI's log.
step() { printf '\n==> [%ss] %s\n' "$((SECONDS - START_S))" "$*"; }
fail() {
    printf '\nci/test.sh: FAILED at step: %s (after %ss)\n' "$1" "$((SECONDS - START_S))" >&2
    exit 1
}
# run STEP-NAME COMMAND...: run a command, and stop the whole run if it fails.
run() {
    local name="$1"
    shift
    "$@" || fail "$name (exit code $?)"
}

# --- 1. system packages ---------------------------------------------------------------------
wait_for_apt() {
    # Another apt/dpkg (for instance an unattended upgrade at boot) may hold the locks; apt waits
    # for the dpkg lock with DPkg::Lock::Timeout, and we retry the whole command for the rest.
    local attempt
    for attempt in $(seq 1 30); do
        if apt-get -o DPkg::Lock::Timeout=600 "$@"; then
            return 0
        fi
        echo "apt-get $* failed (attempt $attempt); retrying in 10 s" >&2
        sleep 10
    done
    return 1
}

missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3 python3-venv python3-pip)
else
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    { command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 \
        || python3 -m pip --version >/dev/null 2>&1; } || missing+=(python3-pip)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# promtool (Debian's prometheus package) lints /metrics in engine/tests/integration/stats.rs.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# nft makes the network partitions of the cluster tests (ci/compat/netfaults.py).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# Go and Sarama's sources for ci/compat/test_sarama.py (built offline in GOPATH mode).
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[[ -d /usr/share/gocode/src/github.com/Shopify/sarama ]] || missing+=(golang-github-shopify-sarama-dev)
# Burrow (LinkedIn's lag monitor) and the ZooKeeper it keeps its state in, for
# ci/compat/test_burrow.py.
command -v Burrow >/dev/null 2>&1 || missing+=(burrow)
{ [[ -f /usr/share/java/zookeeper.jar ]] && command -v java >/dev/null 2>&1; } || missing+=(zookeeper)

if ((${#missing[@]})); then
    step "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run "apt-get update" wait_for_apt update -q
    run "apt-get install ${missing[*]}" wait_for_apt install -y -q --no-install-recommends "${missing[@]}"
    # The package may start a Prometheus server where init scripts run; the suite needs
    # only promtool.
    pkill -x prometheus 2>/dev/null || true
else
    step "system packages present (kcat, python3, pip, venv, node, npm, promtool, nft, go, sarama, burrow, zookeeper)"
fi

# --- 2. client libraries --------------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    step "creating $VENV"
    rm -rf "$VENV"
    run "python3 -m venv" python3 -m venv "$VENV"
fi
step "pip install -r ci/requirements.txt"
run "pip install" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$CI_DIR/requirements.txt"

VENV_KP3="$CI_DIR/.venv-kafka-python3"
if ! "$VENV_KP3/bin/python" -c 'import sys' >/dev/null 2>&1; then
    step "creating $VENV_KP3"
    rm -rf "$VENV_KP3"
    run "python3 -m venv (kafka-python 3)" python3 -m venv "$VENV_KP3"
fi
step "pip install -r ci/requirements-kafka-python3.txt (its own virtualenv)"
run "pip install (kafka-python 3)" "$VENV_KP3/bin/python" -m pip install -q \
    --disable-pip-version-check -r "$CI_DIR/requirements-kafka-python3.txt"
# Every client family runs: a missing one fails its test instead of skipping it.
export SPATE_REQUIRE_ALL_CLIENTS=1
export SPATE_KAFKA_PYTHON3="$VENV_KP3/bin/python"

step "npm ci (kafkajs) in ci/node"
run "npm ci" bash -c "cd '$CI_DIR/node' && npm ci --no-audit --no-fund --loglevel=error"

# --- 3. the broker --------------------------------------------------------------------------
# glommio locks memory for its io_uring buffers; the default RLIMIT_MEMLOCK (often 8 MiB) is
# too small for one ring per shard. The broker raises its own limit when it runs as root; this
# covers running the suite where it cannot, and cargo test's in-process glommio executors.
ulimit -l unlimited 2>/dev/null || echo "warning: could not raise ulimit -l (now $(ulimit -l))" >&2

cd "$REPO_ROOT"
if [[ "${SPATE_CI_SKIP_CARGO:-0}" != 1 ]]; then
    step "cargo build --release"
    run "cargo build --release" cargo build --release
    step "cargo test --workspace --profile ci-test"
    # The tests build with the ci-test profile (Cargo.toml): release's optimisation without
    # link-time optimisation, 10 minutes from scratch on two cores where `--release` took 20
    # (thin LTO of every test binary). The compat suite below still runs the release binary.
    # promtool and kcat are installed above: the metrics lint and the read_committed client
    # check must run, not skip. The whole of it is bounded (exit code 124 when the bound is
    # hit): a hung test fails the run here, naming itself in cargo's "has been running for
    # over 60 seconds", instead of eating CI's budget.
    run "cargo test --workspace --profile ci-test (bounded by ${CARGO_TEST_TIMEOUT_S}s)" \
        timeout --kill-after=30 "$CARGO_TEST_TIMEOUT_S" \
        env SPATE_REQUIRE_PROMTOOL=1 SPATE_REQUIRE_KCAT=1 cargo test --workspace --profile ci-test
else
    step "skipping cargo build and test (SPATE_CI_SKIP_CARGO=1)"
fi
[[ -x "$REPO_ROOT/target/release/spate" ]] || fail "target/release/spate was not built"

# The full run fuzzes the storage parsers for a bounded time: with cargo-fuzz where a nightly
# toolchain is installed (it cannot be installed from the package registries alone), otherwise
# with the stable stand-in (storage/tests/fuzz_corpus.rs) at many more mutations per target.
if [[ "${SPATE_FULL_TESTS:-0}" == 1 ]]; then
    fuzz_seconds="${SPATE_FUZZ_SECONDS:-60}"
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        # New inputs go to a scratch directory (the first corpus directory); the committed
        # corpus is only read.
        fuzz_scratch="$(mktemp -d)"
        for target in batch_validate index_load recovery_scan; do
            step "cargo fuzz run $target (${fuzz_seconds}s)"
            mkdir -p "$fuzz_scratch/$target"
            run "cargo fuzz run $target" bash -c "cd '$REPO_ROOT/storage' && cargo +nightly fuzz run $target \
                '$fuzz_scratch/$target' fuzz/corpus/$target -- -max_total_time=$fuzz_seconds"
        done
        rm -rf "$fuzz_scratch"
    else
        step "fuzzing with the stable stand-in (no nightly cargo-fuzz here)"
        run "fuzz stand-in" env SPATE_FUZZ_CASES="${SPATE_FUZZ_CASES:-20000}" \
            cargo test --release -p spate-storage --test fuzz_corpus
    fi
fi

# --- 4. compatibility and crash tests -------------------------------------------------------
# Broker data dirs and logs of earlier runs (kept there when a test failed).
rm -rf "$REPO_ROOT/target/ci-tmp"
pytest_log="$(mktemp)"
trap 'rm -f "$pytest_log"' EXIT
set +e
# The clients once more with the tail cache off and 64 KiB segments, so that nearly every
# fetch is served from sealed segments by splice (the zero-copy path) rather than from memory.
step "pytest: client tests over the zero-copy fetch path"
SPATE_CI_BROKER_ARGS="--tail-cache-bytes 0 --segment-bytes 65536" \
    "$VENV/bin/python" -m pytest "$CI_DIR/compat/test_confluent.py" "$CI_DIR/compat/test_kafka_python.py" \
    "$CI_DIR/compat/test_kafkajs.py" "$CI_DIR/compat/test_kcat.py" "$CI_DIR/compat/test_aiokafka.py" \
    "$CI_DIR/compat/test_kafka_python3.py" "$CI_DIR/compat/test_sarama.py" -q --timeout="$PYTEST_TIMEOUT_S" "$@"
zero_copy_status=$?
step "pytest ci/compat (timeout ${PYTEST_TIMEOUT_S}s per test)"
# nft is installed above: the network-partition tests must run, not skip.
SPATE_REQUIRE_NETFAULTS=1 "$VENV/bin/python" -m pytest "$CI_DIR/compat" -v --timeout="$PYTEST_TIMEOUT_S" --durations=10 "$@" 2>&1 \
    | tee "$pytest_log"
pytest_status=${PIPESTATUS[0]}
set -e
if [[ "$pytest_status" == 0 && "$zero_copy_status" != 0 ]]; then
    printf '\nci/test.sh: the zero-copy pass of the client tests failed (pytest exited %s)\n' "$zero_copy_status" >&2
    pytest_status=$zero_copy_status
fi

elapsed=$((SECONDS - START_S))
case "$pytest_status" in
    0) printf '\nci/test.sh: all steps passed in %ss\n' "$elapsed" ;;
    5) printf '\nci/test.sh: FAILED: pytest collected no tests (after %ss)\n' "$elapsed" >&2 ;;
    *) printf '\nci/test.sh: FAILED: pytest exited %s (after %ss)\n' "$pytest_status" "$elapsed" >&2 ;;
esac
# End on pytest's own summary line ("N passed, M failed in Ts"), which CI reads.
summary="$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$pytest_log" | tail -n 1 || true)"
[[ -n "$summary" ]] && printf '%s\n' "$summary"
if [[ "$pytest_status" == 0 ]]; then exit 0; else exit 1; fi
