#!/usr/bin/env bash
# The release build a new user runs first (README's first command compiles oci-build): the
# checked-out tree against a baseline revision, each from an empty target directory, one after
# the other in the same run.
#
# Usage:
#   bash benches/release_build.sh [BASE_REV]     default BASE_REV: c46098d (before the trimming)
#
# Each revision is exported with `git archive` into a temporary directory and built with
# `cargo build --release --locked --timings` into its own new target directory. Crates come
# from the local cargo registry (run `cargo fetch` first: downloads are not what is measured).
# Printed per revision: wall seconds, CPU seconds (user + system of cargo and every compiler
# it ran; less sensitive than wall time to other work on the machine), the number of compiled
# units, and the ten slowest units from cargo's timing report. Then the ratios HEAD / BASE.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
base=${1:-c46098d}
[ -x /usr/bin/time ] || { echo "error: GNU time is needed (apt-get install -y time)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-release-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

export_tree() { # REV DIR: the committed tree of REV, or the working tree for HEAD
    mkdir -p "$2"
    if [ "$1" = HEAD ]; then
        (cd "$repo_root" && git ls-files -z --cached --others --exclude-standard |
            tar --null -T - -cf -) | tar -xf - -C "$2"
    else
        git -C "$repo_root" archive "$1" | tar -xf - -C "$2"
    fi
}

slowest() { # timing report HTML: the ten slowest units
    python3 - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S).group(1))
print(f"  units: {len(units)}")
for unit in sorted(units, key=lambda u: -u["duration"])[:10]:
    target = unit.get("target", "").strip()
    print(f"  {unit['duration']:7.1f} s  {unit['name']} {unit['version']} {target}")
PY
}

declare -A wall cpu
for rev in "$base" HEAD; do
    tree=$work/$rev
    export_tree "$rev" "$tree"
    echo "== $rev: cargo build --release --locked (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
    /usr/bin/time -f "%e %U %S" -o "$work/time" \
        cargo build --release --locked --timings --quiet --manifest-path "$tree/Cargo.toml" \
        --target-dir "$tree/target"
    read -r elapsed user system <"$work/time"
    wall[$rev]=$elapsed
    cpu[$rev]=$(awk -v u="$user" -v s="$system" 'BEGIN { printf "%.1f", u + s }')
    echo "  wall ${wall[$rev]} s, cpu ${cpu[$rev]} s (load after: $(cut -d' ' -f1-3 /proc/loadavg))"
    slowest "$(ls "$tree"/target/cargo-timings/cargo-timing-2*.html | head -1)"
done

awk -v hw="${wall[HEAD]}" -v bw="${wall[$base]}" -v hc="${cpu[HEAD]}" -v bc="${cpu[$base]}" \
    -v base="$base" 'BEGIN {
    printf "ratio HEAD / %s: wall %.2f, cpu %.2f\n", base, hw / bw, hc / bc }'
