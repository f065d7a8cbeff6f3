#!/usr/bin/env bash
# The core's relay benchmarks, side by side with an earlier commit's core, in one run:
#   scripts/bench-compare.sh [BASE_REV]        (default: the commit named in BASE below)
# The base's core is exported from git into target/bench-base/ (no worktree), given the
# benchmark file in scripts/bench-baseline/ (the same benchmarks written against the base's
# API: the state types differ), and built into a target dir of its own. Both bench binaries
# then run one benchmark at a time, alternating base and current, so both see the same
# machine load; the table prints each mean and the ratio current / base.
# Extra arguments after BASE_REV go to both criterion binaries (e.g. --measurement-time 5).
set -euo pipefail
cd "$(dirname "$0")/.."
# The main of before issue 14 (schema 2, one Snapshot in RAM): the figures of that issue
# are measured against it.
BASE=35b2e21
base=${1:-$BASE}
shift || true
target=${CARGO_TARGET_DIR:-$PWD/target}
work="$target/bench-base"
rm -rf "$work"
mkdir -p "$work"
git archive "$base" | tar -x -C "$work"
cp scripts/bench-baseline/relay.rs "$work/core/benches/relay.rs"

bench_bin() { # dir target-dir -> path of the built relay bench binary
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p gitter-bridge-core --bench relay \
        --no-run --message-format=json 2>/dev/null) |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "relay" and m.get("executable"):
        print(m["executable"])' | tail -1
}
echo "building the base ($base) and the current core's benchmarks" >&2
# The base builds in a target dir of its own: both packages are `gitter-bridge-core` of the
# same version, and in one target dir cargo takes one for the other (same artifact names and
# fingerprints), so both runs would measure the same binary.
# The base is built as it was: with ruma's default id storage (`Box<str>`), not the `Arc<str>`
# the workspace's .cargo/config.toml sets now (cargo finds that file from the base's directory,
# which is inside this repository; a variable set here wins over it).
base_bin=$(RUMA_IDENTIFIERS_STORAGE=Box bench_bin "$work" "$target/bench-base-target")
cur_bin=$(bench_bin "$PWD" "$target")
[ -n "$base_bin" ] && [ -n "$cur_bin" ] || { echo "a bench did not build" >&2; exit 1; }
if cmp -s "$base_bin" "$cur_bin"; then
    echo "the base and the current bench are the same binary: nothing to compare" >&2
    exit 1
fi

names=(gitter_to_matrix/1 gitter_to_matrix/100 gitter_to_matrix_formatted/1
       gitter_to_matrix_formatted/100 matrix_to_gitter/owner_message
       matrix_transaction/full_dedupe)
out_base="$work/criterion-base"
out_cur="$work/criterion-current"
for name in "${names[@]}"; do
    echo "== $name" >&2
    CRITERION_HOME="$out_base" "$base_bin" --bench "^${name}\$" "$@" >/dev/null
    CRITERION_HOME="$out_cur" "$cur_bin" --bench "^${name}\$" "$@" >/dev/null
done
python3 - "$out_base" "$out_cur" "${names[@]}" <<'PY'
import json, sys, os
base, cur, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def mean(root, name):
    with open(os.path.join(root, name, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]
print(f"{'benchmark':34} {'base':>12} {'current':>12} {'ratio':>7}")
for n in names:
    b, c = mean(base, n), mean(cur, n)
    print(f"{n:34} {b/1000:10.2f}µs {c/1000:10.2f}µs {c/b:7.3f}")
owner = mean(cur, "matrix_to_gitter/owner_message")
full = mean(cur, "matrix_transaction/full_dedupe")
print(f"current full_dedupe / owner_message: {full/owner:.3f}")
PY
