#!/usr/bin/env bash
# Layer assembly throughput: oci-build against tar | gzip / pigz / zstd on the same real tree.
#
# Usage:
#   bash benches/layer_assembly.sh [DIR...]
#
# DIR... (or BENCH_TREE="DIR DIR ...", whitespace- or colon-separated) names the directories to
# pack; default: /usr/lib/python3 /usr/lib/python3.11 (about 100 MB). They are copied once into
# a temporary project as tree/<basename>, and every method packs that same copy.
#
# Other knobs (environment):
#   BENCH_RUNS=3        rounds; each round runs every method once (interleaved, so load from
#                       other work falls on all methods alike); the best wall time is kept
#   OCI_BUILD_BIN=PATH  use this binary instead of running `cargo build --release`
#   TMPDIR              where the temporary project, caches and outputs go
#
# Every oci-build run gets a new, empty --cache-dir, so the layer is really written; one extra
# line shows a rebuild with a warm cache. MB is 10^6 bytes; "original" is the size of the
# `tar --sort=name` stream of the tree. Peak RSS and CPU seconds (user + system, of the whole
# pipeline; the least of the rounds) need GNU time (/usr/bin/time): unlike wall time, CPU time
# barely moves when other work shares the machine.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
runs=${BENCH_RUNS:-3}

if [ "$#" -gt 0 ]; then
    trees=("$@")
elif [ -n "${BENCH_TREE:-}" ]; then
    read -r -a trees <<<"${BENCH_TREE//:/ }"
else
    trees=(/usr/lib/python3 /usr/lib/python3.11)
fi
for dir in "${trees[@]}"; do
    [ -d "$dir" ] || { echo "error: $dir is not a directory" >&2; exit 2; }
done
case "$runs" in
    '' | *[!0-9]* | 0) echo "error: BENCH_RUNS must be a positive whole number" >&2; exit 2 ;;
esac

note() { printf '%s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then
    note "error: GNU tar is needed (for --sort=name)"; exit 2
fi
command -v gzip >/dev/null || { note "error: gzip not found"; exit 2; }
have_pigz=0; command -v pigz >/dev/null && have_pigz=1
have_zstd=0; command -v zstd >/dev/null && have_zstd=1
gnu_time=
if [ -x /usr/bin/time ] && /usr/bin/time --version 2>&1 | grep -q GNU; then
    gnu_time=/usr/bin/time
fi
[ "$have_pigz" = 1 ] || note "NOTE: pigz not found (apt-get install -y pigz): the tar | pigz line is skipped"
[ "$have_zstd" = 1 ] || note "NOTE: zstd CLI not found (apt-get install -y zstd): the tar | zstd line is skipped"
[ -n "$gnu_time" ] || note "NOTE: GNU time not found (apt-get install -y time): no peak RSS or CPU seconds"

# --- binary --------------------------------------------------------------------------------
if [ -n "${OCI_BUILD_BIN:-}" ]; then
    bin=$OCI_BUILD_BIN
else
    note "building oci-build (cargo build --release) in $repo_root ..."
    (cd "$repo_root" && cargo build --release --quiet)
    bin=${CARGO_TARGET_DIR:-$repo_root/target}/release/oci-build
    case "$bin" in /*) ;; *) bin=$repo_root/$bin ;; esac
fi
[ -x "$bin" ] || { note "error: $bin is not an executable"; exit 2; }

# --- project -------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
project=$tmp/project
mkdir -p "$project/recipes" "$project/tree"
for dir in "${trees[@]}"; do
    name=$(basename "$dir")
    dest=$project/tree/$name
    n=1
    while [ -e "$dest" ]; do n=$((n + 1)); dest=$project/tree/$name.$n; done
    cp -a "$dir" "$dest"
done
cat >"$project/recipes/bench.toml" <<'EOF'
platforms = ["linux/amd64"]
[[layer]]
files = [{ src = "tree", dest = "/usr/lib/bench" }]
EOF

tar_tree() { tar --sort=name -cf - -C "$project" tree; }
# Also warms the page cache, so every method reads the tree from memory.
orig_bytes=$(tar_tree | wc -c)
orig_bytes=${orig_bytes//[[:space:]]/}

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

# Largest file under a directory (the layer blob of a one-layer image), in bytes.
largest_blob() {
    local f size best=0
    for f in "$1"/blobs/sha256/*; do
        size=$(wc -c <"$f")
        [ "$size" -gt "$best" ] && best=$size
    done
    echo "$best"
}

mbps_of() { awk -v b="$orig_bytes" -v s="$1" 'BEGIN { printf "%.1f", (s > 0) ? b / 1e6 / s : 0 }'; }

# Per method: best wall time, compressed bytes, peak RSS KiB (oci-build only).
declare -A best size rss mbps cpu
methods=()

# Keeps the least CPU seconds (user + system) that GNU time wrote to $tmp/cpu.
keep_cpu() {
    local c
    c=$(awk 'END { printf "%.2f", $(NF - 1) + $NF }' "$tmp/cpu")
    cpu[$1]=$(min "${cpu[$1]:-}" "$c")
}

# One timed run of `tar | $*`.
run_peer() {
    local label=$1; shift
    local s e
    if [ -n "$gnu_time" ]; then
        # The whole pipeline under GNU time, so that tar's CPU counts too.
        s=$(now)
        "$gnu_time" -f '%U %S' -o "$tmp/cpu" bash -c \
            'tar --sort=name -cf - -C "$0" tree | "${@}" >/dev/null' "$project" "$@"
        e=$(now)
        keep_cpu "$label"
    else
        s=$(now); tar_tree | "$@" >/dev/null; e=$(now)
    fi
    best[$label]=$(min "${best[$label]:-}" "$(elapsed "$s" "$e")")
}

# One timed oci-build run with a new, empty cache and output. The cache of the run stays in
# $last_cache (for the cached rebuild) until the next oci-build run.
last_cache=
oci_run=0
run_oci() {
    local label=$1 compression=$2
    local s e r cache out
    oci_run=$((oci_run + 1))
    cache=$tmp/cache.$oci_run
    out=$tmp/out.$oci_run
    if [ -n "$last_cache" ]; then rm -rf "$last_cache"; fi
    mkdir "$cache"
    local cmd=("$bin" -C "$project" --cache-dir "$cache" -q build bench
        --output "oci:$out" --compression "$compression")
    if [ -n "$gnu_time" ]; then
        s=$(now); "$gnu_time" -f '%M %U %S' -o "$tmp/cpu" "${cmd[@]}"; e=$(now)
        r=$(awk 'END { print $1 }' "$tmp/cpu")
        keep_cpu "$label"
        if [ "$r" -gt "${rss[$label]:-0}" ]; then rss[$label]=$r; fi
    else
        s=$(now); "${cmd[@]}"; e=$(now)
    fi
    best[$label]=$(min "${best[$label]:-}" "$(elapsed "$s" "$e")")
    size[$label]=$(largest_blob "$out")
    rm -rf "$out"
    last_cache=$cache
}

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

# --- measurements --------------------------------------------------------------------------
cores=$(nproc)
model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
busy_before=$(cpu_busy 2>/dev/null || echo "?")
note "tree: ${trees[*]} ($orig_bytes bytes as tar); $runs rounds, every method once per round, best kept"
[ "$cores" = 2 ] || note "NOTE: $cores cores here; the peers use 2 threads (-p2/-T2) but oci-build uses all $cores"
case "$busy_before" in
    '?') ;;
    *) [ "$busy_before" -lt 15 ] ||
        note "WARNING: CPUs were ${busy_before}% busy before the bench started; other work skews the numbers" ;;
esac

methods+=("tar (no compression)" "tar | gzip -6")
[ "$have_pigz" = 1 ] && methods+=("tar | pigz -6 -p2")
[ "$have_zstd" = 1 ] && methods+=("tar | zstd -3 -T2")
methods+=("oci-build gzip" "oci-build zstd")

run_method() {
    case "$1" in
        "tar (no compression)") run_peer "$1" cat ;;
        "tar | gzip -6") run_peer "$1" gzip -6 ;;
        "tar | pigz -6 -p2") run_peer "$1" pigz -6 -p2 ;;
        "tar | zstd -3 -T2") run_peer "$1" zstd -q -3 -T2 -c ;;
        "oci-build gzip") run_oci "$1" gzip ;;
        "oci-build zstd") run_oci "$1" zstd ;;
    esac
}

# Rounds: every method once per round, so that noise from other work on the machine falls on
# all methods alike rather than on whichever ran during it.
for ((round = 1; round <= runs; round++)); do
    note "round $round/$runs"
    for m in "${methods[@]}"; do run_method "$m"; done
done
for m in "${methods[@]}"; do
    case "$m" in
        "tar (no compression)") size[$m]=$orig_bytes ;;
        "tar | gzip -6") size[$m]=$(tar_tree | gzip -6 | wc -c) ;;
        "tar | pigz -6 -p2") size[$m]=$(tar_tree | pigz -6 -p2 | wc -c) ;;
        "tar | zstd -3 -T2") size[$m]=$(tar_tree | zstd -q -3 -T2 -c | wc -c) ;;
    esac
    size[$m]=${size[$m]//[[:space:]]/}
    mbps[$m]=$(mbps_of "${best[$m]}")
done

# Rebuild with the warm cache of the last oci-build run (zstd): the layer comes from the cache.
cached_best=
for ((i = 1; i <= runs; i++)); do
    rm -rf "$tmp/out.cached"
    s=$(now)
    "$bin" -C "$project" --cache-dir "$last_cache" -q build bench \
        --output "oci:$tmp/out.cached" --compression zstd
    e=$(now)
    cached_best=$(min "$cached_best" "$(elapsed "$s" "$e")")
done
busy_after=$(cpu_busy 2>/dev/null || echo "?")

# --- report --------------------------------------------------------------------------------
echo
echo "layer assembly: $(date +%F), $cores cores (nproc), ${model:-unknown CPU}"
echo "tree: ${trees[*]}: $orig_bytes bytes uncompressed (tar --sort=name), $((orig_bytes / 1000000)) MB"
echo "best of $runs runs (interleaved); MB/s = uncompressed MB (10^6 bytes) / second"
echo "CPU busy from other work: ${busy_before}% just before, ${busy_after}% just after"
echo
printf '%-22s %9s %9s %8s %8s %14s\n' method seconds MB/s ratio "CPU s" "peak RSS"
printf '%-22s %9s %9s %8s %8s %14s\n' ---------------------- --------- --------- -------- -------- --------------
for m in "${methods[@]}"; do
    ratio=$(awk -v c="${size[$m]}" -v o="$orig_bytes" 'BEGIN { printf "%.3f", c / o }')
    [ "$m" != "tar (no compression)" ] || ratio=-
    r=-
    [ -z "${rss[$m]:-}" ] || r="$((rss[$m] / 1024)) MiB"
    printf '%-22s %9s %9s %8s %8s %14s\n' "$m" "${best[$m]}" "${mbps[$m]}" "$ratio" "${cpu[$m]:--}" "$r"
done
printf '%-22s %9s %9s %8s %8s %14s\n' "oci-build, cached" "$cached_best" - - - -
echo
echo "ratio = compressed size / uncompressed tar size (oci-build: the layer blob)"
echo "CPU s = user + system seconds of the whole run or pipeline, least of the rounds"
if [ -z "$gnu_time" ]; then
    echo "peak RSS: n/a (GNU time not found; apt-get install -y time)"
fi
[ "$have_pigz" = 1 ] || echo "tar | pigz: skipped (pigz not found; apt-get install -y pigz)"
[ "$have_zstd" = 1 ] || echo "tar | zstd: skipped (zstd CLI not found; apt-get install -y zstd)"

speedup() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
x=$(speedup "${mbps[oci-build gzip]}" "${mbps[tar | gzip -6]}")
echo "oci-build gzip / tar|gzip -6: ${x}x"
if [ "$have_pigz" = 1 ]; then
    x=$(speedup "${mbps[oci-build gzip]}" "${mbps[tar | pigz -6 -p2]}")
    verdict=$(awk -v x="$x" 'BEGIN { print (x >= 2) ? "meets" : "MISSES" }')
    echo "oci-build gzip / tar|pigz -6 -p2: ${x}x  (target >= 2x: $verdict)"
    size_x=$(speedup "${size[oci-build gzip]}" "${size[tar | pigz -6 -p2]}")
    echo "oci-build gzip size / tar|pigz -6 -p2 size: ${size_x}  (target 0.98 to 1.02)"
    if [ -n "${cpu[oci-build gzip]:-}" ]; then
        x=$(speedup "${cpu[tar | pigz -6 -p2]}" "${cpu[oci-build gzip]}")
        echo "CPU seconds, tar|pigz -6 -p2 / oci-build gzip: ${x}x"
    fi
else
    echo "oci-build gzip / tar|pigz -6 -p2: n/a (pigz not found)"
fi
if [ "$have_zstd" = 1 ]; then
    x=$(speedup "${mbps[oci-build zstd]}" "${mbps[tar | zstd -3 -T2]}")
    echo "oci-build zstd / tar|zstd -3 -T2: ${x}x"
else
    echo "oci-build zstd / tar|zstd -3 -T2: n/a (zstd CLI not found)"
fi
verdict=$(awk -v m="${mbps[oci-build zstd]}" 'BEGIN { print (m > 100) ? "meets" : "MISSES" }')
echo "oci-build zstd: ${mbps[oci-build zstd]} MB/s  (target well above 100 MB/s: $verdict)"
