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
#   BENCH_RUNS=3        timed runs per method; the best (minimum) wall time is reported
#   OCI_BUILD_BIN=PATH  use this binary instead of running `cargo build --release`
#   TMPDIR              where the temporary project, caches and outputs go
#
# Every oci-build run gets a new, empty --cache-dir, so the layer is really written; one extra
# line shows a rebuild with a warm cache. MB is 10^6 bytes; "original" is the size of the
# `tar --sort=name` stream of the tree. Peak RSS needs GNU time (/usr/bin/time).
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
[ -n "$gnu_time" ] || note "NOTE: GNU time not found (apt-get install -y time): no peak RSS for oci-build"

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

# Rows of the result table: method|seconds|compressed bytes|peak RSS KiB
rows=()
declare -A mbps

mbps_of() { awk -v b="$orig_bytes" -v s="$1" 'BEGIN { printf "%.1f", (s > 0) ? b / 1e6 / s : 0 }'; }

# Runs a peer pipeline `tar | $*` $runs times, best wall time; size from one extra untimed run.
bench_peer() {
    local label=$1; shift
    local i s e best=
    for ((i = 1; i <= runs; i++)); do
        s=$(now); tar_tree | "$@" >/dev/null; e=$(now)
        best=$(min "$best" "$(elapsed "$s" "$e")")
    done
    local size
    size=$(tar_tree | "$@" | wc -c)
    rows+=("$label|$best|${size//[[:space:]]/}|")
    mbps[$label]=$(mbps_of "$best")
    note "  $label: ${best}s"
}

# oci-build with a fresh cache and output per run. Leaves the last cache in $last_cache.
last_cache=
bench_oci() {
    local compression=$1 label="oci-build $1"
    local i s e best= size=0 rss=0 r cache out
    for ((i = 1; i <= runs; i++)); do
        cache=$tmp/cache.$compression.$i
        out=$tmp/out.$compression.$i
        [ -n "$last_cache" ] && rm -rf "$last_cache"
        rm -rf "$out"
        mkdir "$cache"
        local cmd=("$bin" -C "$project" --cache-dir "$cache" -q build bench
            --output "oci:$out" --compression "$compression")
        if [ -n "$gnu_time" ]; then
            s=$(now); "$gnu_time" -f %M -o "$tmp/rss" "${cmd[@]}"; e=$(now)
            r=$(tail -n 1 "$tmp/rss")
            [ "$r" -gt "$rss" ] && rss=$r
        else
            s=$(now); "${cmd[@]}"; e=$(now)
        fi
        best=$(min "$best" "$(elapsed "$s" "$e")")
        size=$(largest_blob "$out")
        rm -rf "$out"
        last_cache=$cache
    done
    [ -n "$gnu_time" ] || rss=
    rows+=("$label|$best|$size|$rss")
    mbps[$label]=$(mbps_of "$best")
    note "  $label: ${best}s"
}

# --- measurements --------------------------------------------------------------------------
cores=$(nproc)
model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
note "tree: ${trees[*]} ($orig_bytes bytes as tar); $runs runs per method, best kept"
[ "$cores" = 2 ] || note "NOTE: $cores cores here; the peers use 2 threads (-p2/-T2) but oci-build uses all $cores"

bench_peer "tar (no compression)" cat
bench_peer "tar | gzip -6" gzip -6
if [ "$have_pigz" = 1 ]; then bench_peer "tar | pigz -6 -p2" pigz -6 -p2; fi
if [ "$have_zstd" = 1 ]; then bench_peer "tar | zstd -3 -T2" zstd -q -3 -T2 -c; fi
bench_oci gzip
bench_oci zstd

# Rebuild with the warm cache of the last zstd run: the layer comes from the cache.
cached_best=
for ((i = 1; i <= runs; i++)); do
    rm -rf "$tmp/out.cached"
    s=$(now)
    "$bin" -C "$project" --cache-dir "$last_cache" -q build bench \
        --output "oci:$tmp/out.cached" --compression zstd
    e=$(now)
    cached_best=$(min "$cached_best" "$(elapsed "$s" "$e")")
done

# --- report --------------------------------------------------------------------------------
echo
echo "layer assembly: $(date +%F), $cores cores (nproc), ${model:-unknown CPU}"
echo "tree: ${trees[*]}: $orig_bytes bytes uncompressed (tar --sort=name), $((orig_bytes / 1000000)) MB"
echo "best of $runs runs; MB/s = uncompressed MB (10^6 bytes) / second"
echo
printf '%-22s %9s %9s %8s %14s\n' method seconds MB/s ratio "peak RSS"
printf '%-22s %9s %9s %8s %14s\n' ---------------------- --------- --------- -------- --------------
for row in "${rows[@]}"; do
    IFS='|' read -r label secs size rss <<<"$row"
    ratio=$(awk -v c="$size" -v o="$orig_bytes" 'BEGIN { printf "%.3f", c / o }')
    [ -n "$rss" ] && rss="$((rss / 1024)) MiB" || rss=-
    [ "$label" = "tar (no compression)" ] && ratio=-
    printf '%-22s %9s %9s %8s %14s\n' "$label" "$secs" "${mbps[$label]}" "$ratio" "$rss"
done
printf '%-22s %9s %9s %8s %14s\n' "oci-build, cached" "$cached_best" - - -
echo
echo "ratio = compressed size / uncompressed tar size"
if [ -z "$gnu_time" ]; then
    echo "peak RSS: n/a (GNU time not found; apt-get install -y time)"
fi

speedup() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
if [ "$have_pigz" = 1 ]; then
    x=$(speedup "${mbps[oci-build gzip]}" "${mbps[tar | pigz -6 -p2]}")
    verdict=$(awk -v x="$x" 'BEGIN { print (x >= 2) ? "meets" : "MISSES" }')
    echo "oci-build gzip / tar|pigz -6 -p2: ${x}x  (target >= 2x: $verdict)"
else
    echo "oci-build gzip / tar|pigz -6 -p2: n/a (pigz not found; apt-get install -y pigz)"
fi
if [ "$have_zstd" = 1 ]; then
    x=$(speedup "${mbps[oci-build zstd]}" "${mbps[tar | zstd -3 -T2]}")
    echo "oci-build zstd / tar|zstd -3 -T2: ${x}x"
else
    echo "oci-build zstd / tar|zstd -3 -T2: n/a (zstd CLI not found)"
fi
verdict=$(awk -v m="${mbps[oci-build zstd]}" 'BEGIN { print (m > 100) ? "meets" : "MISSES" }')
echo "oci-build zstd: ${mbps[oci-build zstd]} MB/s  (target well above 100 MB/s: $verdict)"
