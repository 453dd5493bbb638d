#!/usr/bin/env bash
# A no-op rebuild: the mlrun target, then the family (`build --all`), built again from the
# lock with everything in the cache, against `skopeo copy` of the same images into a layout
# that already holds them, measured in the same rounds.
#
# Usage:
#   bash benches/noop_rebuild.sh
#
# Environment:
#   OCI_BUILD_BIN=PATH       use this binary instead of `cargo build --release`
#   BENCH_CACHE_DIR=DIR      the cache to build in (default: target/bench-noop-cache, kept
#                            between runs: the first run fills it, which takes a cold build)
#   BENCH_ALL_TARGETS="T..." the family as named targets instead of `--all` (for a machine
#                            without the disk or time for the heavy images)
#   BENCH_RUNS=N             rounds (default 5); the best time of each method is kept
#   TMPDIR                   where the outputs go (removed on exit)
#
# Each round times, in turn: oci-build's no-op rebuild of mlrun into its output layout, skopeo
# copying that image into a second layout that already holds it, oci-build's no-op rebuild of
# the family, and skopeo copying every image of the family likewise. The first build of each
# (not timed) fills the cache and the layouts.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
runs=${BENCH_RUNS:-5}
cache=${BENCH_CACHE_DIR:-$repo_root/target/bench-noop-cache}

for tool in skopeo python3 bc; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 2; }
done
if [ -n "${OCI_BUILD_BIN:-}" ]; then
    bin=$OCI_BUILD_BIN
else
    (cd "$repo_root" && cargo build --release --locked --quiet)
    bin=$repo_root/target/release/oci-build
fi
if [ -n "${BENCH_ALL_TARGETS:-}" ]; then
    read -r -a family <<<"$BENCH_ALL_TARGETS"
    family_label="build ${family[*]}"
else
    family=(--all)
    family_label="build --all"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-noop-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

# Percent of all CPUs busy over one second, from /proc/stat.
cpu_busy() {
    local a b
    a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2];
        printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}

build() { # OUTPUT TARGETS...: a build from the lock into the layout OUTPUT, with its report
    local out=$1
    shift
    "$bin" -q -C "$repo_root" --cache-dir "$cache" build "$@" --locked --json \
        --output "oci:$work/$out" >"$work/$out.json"
}

# The tags the report of a build wrote into its layout.
tags() {
    python3 - "$work/$1.json" <<'PY'
import json, sys
for target in json.load(open(sys.argv[1])):
    print(target["output"].split(":", 2)[2])
PY
}

copy_all() { # LAYOUT: skopeo copies each image of LAYOUT into LAYOUT-peer
    local tag
    while read -r tag; do
        skopeo copy -q "oci:$work/$1:$tag" "oci:$work/$1-peer:$tag" >/dev/null
    done <"$work/$1.tags"
}

echo "filling the cache and the layouts (a cold build the first time) ..." >&2
build mlrun mlrun
build family "${family[@]}"
for out in mlrun family; do
    tags "$out" >"$work/$out.tags"
    copy_all "$out"
done

declare -A best
methods=("oci-build mlrun" "skopeo copy mlrun" "oci-build family" "skopeo copy family")
timed() { # METHOD COMMAND...
    local method=$1 start elapsed
    shift
    start=$(now)
    "$@"
    elapsed=$(echo "$(now) - $start" | bc)
    if [ -z "${best[$method]:-}" ] || [ "$(echo "$elapsed < ${best[$method]}" | bc)" = 1 ]; then
        best[$method]=$elapsed
    fi
}

busy_before=$(cpu_busy)
for _ in $(seq "$runs"); do
    timed "oci-build mlrun" build mlrun mlrun
    timed "skopeo copy mlrun" copy_all mlrun
    timed "oci-build family" build family "${family[@]}"
    timed "skopeo copy family" copy_all family
done
busy_after=$(cpu_busy)

built=$(python3 -c 'import json, sys; print(sum(t["layers_built"] for t in json.load(open(sys.argv[1]))))' "$work/family.json")
images=$(wc -l <"$work/family.tags")
echo
echo "no-op rebuild: $(date +%F), $(nproc) cores, best of $runs interleaved rounds"
echo "family: $family_label ($images images; layers built in the last round: $built)"
echo "CPU busy from other work: ${busy_before}% just before, ${busy_after}% just after"
echo
printf '%-22s %9s\n' method seconds
printf '%-22s %9s\n' ---------------------- ---------
for m in "${methods[@]}"; do
    printf '%-22s %9.3f\n' "$m" "${best[$m]}"
done
echo
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "oci-build mlrun / skopeo copy mlrun:   $(ratio "${best[oci-build mlrun]}" "${best[skopeo copy mlrun]}")x  (target: mlrun < 0.3 s)"
echo "oci-build family / skopeo copy family: $(ratio "${best[oci-build family]}" "${best[skopeo copy family]}")x  (target: build --all < 1 s)"
