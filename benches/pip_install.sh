#!/usr/bin/env bash
# Installing a locked Python closure into a layer: oci-build against `uv pip install --target`
# and `pip install --target`, each followed by `tar | gzip -6`, on the same pinned wheels with
# warm caches (wheels downloaded, uv's and pip's caches filled, oci-build's wheel extraction
# cache filled; only the layer itself is written again).
#
# Usage:
#   bash benches/pip_install.sh [REQUIREMENT...]      default: mlrun
#
# Environment:
#   BENCH_RUNS=3        rounds; each round runs every method once, interleaved; best time kept
#   OCI_BUILD_BIN=PATH  use this binary instead of `cargo build --release`
#   TMPDIR              where the project, caches and outputs go
#
# The index is the host's pip configuration for all three tools. The image's Python for
# oci-build is a dpkg status naming Debian's Python 3.11.2 and glibc 2.36 (no base image needs
# building); uv and pip install with the host's python3 (3.11 here: the same cp311 wheels).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
runs=${BENCH_RUNS:-3}
requirements=("$@")
[ "${#requirements[@]}" -gt 0 ] || requirements=(mlrun)

for tool in uv python3 tar gzip; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 2; }
done

if [ -n "${OCI_BUILD_BIN:-}" ]; then
    bin=$OCI_BUILD_BIN
else
    (cd "$repo_root" && cargo build --release --quiet)
    bin=$repo_root/target/release/oci-build
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-pip-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
project=$work/project
mkdir -p "$project/recipes" "$project/fixtures"
printf 'Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\nPackage: libpython3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6\n' \
    >"$project/fixtures/status"
packages=$(printf '"%s", ' "${requirements[@]}")
cat >"$project/recipes/app.toml" <<TOML
image = "bench/app:1"
platforms = ["linux/amd64"]
[[layer]]
files = [{ src = "fixtures/status", dest = "/var/lib/dpkg/status" }]
[[layer]]
pip = { packages = [${packages%, }] }
TOML

cache=$work/cache
echo "locking ${requirements[*]} ..." >&2
"$bin" -q -C "$project" --cache-dir "$cache" lock app
python3 - "$project/recipes/recipes.lock" >"$work/pinned.txt" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
for layer in lock["pip"]:
    for p in layer["packages"]:
        print(f'{p["name"]}=={p["version"]}')
PY
count=$(wc -l <"$work/pinned.txt")

now() { date +%s.%N; }
oci_build_run() {
    rm -rf "$cache/layers-v1" "$work/out"
    "$bin" -q -C "$project" --cache-dir "$cache" build app --output "oci:$work/out"
}
uv_run() {
    rm -rf "$work/uv-target" "$work/uv.tar.gz"
    UV_CACHE_DIR=$work/uv-cache uv pip install --quiet --no-deps --target "$work/uv-target" -r "$work/pinned.txt"
    tar -C "$work/uv-target" -cf - . | gzip -6 >"$work/uv.tar.gz"
}
pip_run() {
    rm -rf "$work/pip-target" "$work/pip.tar.gz"
    PIP_CACHE_DIR=$work/pip-cache python3 -m pip install --quiet --disable-pip-version-check \
        --no-compile --no-deps --target "$work/pip-target" -r "$work/pinned.txt" 2>/dev/null
    tar -C "$work/pip-target" -cf - . | gzip -6 >"$work/pip.tar.gz"
}

echo "warming the caches ($count distributions) ..." >&2
oci_build_run
uv_run
pip_run

declare -A best
for round in $(seq "$runs"); do
    for method in oci_build uv pip; do
        start=$(now)
        "${method}_run"
        elapsed=$(echo "$(now) - $start" | bc)
        if [ -z "${best[$method]:-}" ] || [ "$(echo "$elapsed < ${best[$method]}" | bc)" = 1 ]; then
            best[$method]=$elapsed
        fi
    done
    echo "round $round done" >&2
done

layer=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/index.json")); print(m["manifests"][0]["digest"])' "$work/out")
size_of() { du -sb "$1" | cut -f1; }
printf '\n%s distributions (%s), best of %s rounds, %s\n' "$count" "${requirements[*]}" "$runs" "$(nproc) cores"
printf '%-44s %10s %12s\n' method seconds "vs oci-build"
for method in oci_build uv pip; do
    label=$method
    case $method in
        oci_build) label="oci-build (install + tar + gzip, one pass)" ;;
        uv) label="uv pip install --target + tar | gzip -6" ;;
        pip) label="pip install --target + tar | gzip -6" ;;
    esac
    printf '%-44s %10.2f %11.2fx\n' "$label" "${best[$method]}" "$(echo "${best[$method]} / ${best[oci_build]}" | bc -l)"
done
printf '\nuncompressed trees: uv %s MB, pip %s MB; gzip layers: uv %s MB, pip %s MB (oci-build manifest %s)\n' \
    "$(( $(size_of "$work/uv-target") / 1000000 ))" "$(( $(size_of "$work/pip-target") / 1000000 ))" \
    "$(( $(size_of "$work/uv.tar.gz") / 1000000 ))" "$(( $(size_of "$work/pip.tar.gz") / 1000000 ))" "$layer"
