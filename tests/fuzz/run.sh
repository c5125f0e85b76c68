#!/usr/bin/env bash
# Coverage-guided fuzzing of the strategy spec parser (`spec`) and the heartbeat line codec (`codec`).
#
#   bash tests/fuzz/run.sh [SECONDS]     # default 60 s per target
#
# Needs cargo-fuzz (installed if missing) and only a stable toolchain: RUSTC_BOOTSTRAP=1 unlocks the -Z
# sanitizer/coverage flags cargo-fuzz passes. The working corpus grows in tests/fuzz/work/ (ignored by git),
# seeded from the committed tests/fuzz/corpus/<target>/. Any crashing input is copied into
# tests/fuzz/corpus/<target>/, where `cargo test --test fuzz_corpus` replays it from then on.
# Exit status: 0 if no target found anything, 1 otherwise.
set -euo pipefail

secs=${1:-60}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash tests/fuzz/run.sh [SECONDS]" >&2; exit 2; }

cd "$(dirname "$0")/../.."
fuzz=tests/fuzz
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

found=0
for target in spec codec replies; do
    work=$fuzz/work/$target
    artifacts=$fuzz/artifacts/$target
    mkdir -p "$work" "$artifacts"
    extra=()
    [[ -f $fuzz/$target.dict ]] && extra+=("-dict=$fuzz/$target.dict")
    echo "== fuzzing $target for ${secs}s" >&2
    status=0
    cargo fuzz run --fuzz-dir "$fuzz" "$target" "$work" "$fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        2>&1 | tee "$fuzz/work/$target.log" || status=$?
    new=0
    for f in "$artifacts"/*; do
        [[ -f $f ]] || continue
        name=$(basename "$f")
        if [[ ! -e $fuzz/corpus/$target/$name ]]; then
            cp "$f" "$fuzz/corpus/$target/$name"
            echo "== $target: new failing input saved as $fuzz/corpus/$target/$name" >&2
            new=$((new + 1))
        fi
    done
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$fuzz/work/$target.log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$fuzz/work/$target.log" | grep -o '[0-9]*$' || true)
    echo "== $target: ${runs:-?} executions, ${rate:-?} exec/s, exit $status, $new new failing input(s)" >&2
    if ((status != 0 || new > 0)); then found=1; fi
done

if ((found)); then
    echo "== fuzzing found problems: fix them, then 'cargo test --test fuzz_corpus' replays the saved inputs" >&2
fi
exit "$found"
