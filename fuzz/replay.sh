#!/usr/bin/env bash
# The fuzz step of .ci/run (issue 13, "Fuzzing"): every target replays its seed corpus in
# fuzz/corpus/<target>/ and then fuzzes for a few seconds from it. A crash, a broken
# invariant or a target that no longer builds fails the step; what is only missing from the
# machine skips it with a note, so it never fails for a reason that is not the code:
#   * no nightly toolchain, no cargo-fuzz, no C++ compiler (libFuzzer is C++);
#   * the fuzz crate's dependencies cannot be fetched (no network);
#   * the build does not finish within its budget: a cold build of every dependency with
#     coverage instrumentation takes minutes on two cores; what was built stays in
#     fuzz/target and the next run goes on from there.
# Budgets (seconds): FUZZ_BUILD_SECS (default 100), FUZZ_SECS (per target, default 5).
set -euo pipefail
cd "$(dirname "$0")"
build_secs=${FUZZ_BUILD_SECS:-100}
fuzz_secs=${FUZZ_SECS:-5}

skip() {
    echo "fuzz: skipped: $*"
    exit 0
}
cargo +nightly --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "no cargo-fuzz (cargo install cargo-fuzz --locked)"
command -v c++ >/dev/null 2>&1 || skip "no C++ compiler to build libFuzzer with"
cargo +nightly fetch --quiet 2>/dev/null || skip "the fuzz crate's dependencies cannot be fetched"

# A debug build without ASan: quickest to build, and the targets check panics and
# invariants (safe Rust); the long runs are documented in fuzz/README.md.
flags=(--dev --sanitizer none)
rc=0
timeout "$build_secs" cargo +nightly fuzz build "${flags[@]}" || rc=$?
if [ "$rc" -eq 124 ]; then
    skip "the build did not finish within ${build_secs}s (it goes on from there next run)"
elif [ "$rc" -ne 0 ]; then
    echo "fuzz: the fuzz targets do not build" >&2
    exit "$rc"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo +nightly fuzz list); do
    echo "fuzz: $target (corpus replay, then ${fuzz_secs}s)"
    mkdir -p "$work/$target"
    # New inputs go to the first directory (thrown away); the seeds are only read.
    status=0
    cargo +nightly fuzz run "${flags[@]}" "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$fuzz_secs" -timeout=30 -print_final_stats=1 \
        >"$work/$target.log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$work/$target.log" >&2
        echo "fuzz: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$work/$target.log" || true
done
echo "fuzz: every target passed"
