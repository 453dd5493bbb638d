#!/usr/bin/env bash
# Peak memory against image size: each target built with `--locked` from a new, empty cache
# (every package downloaded, unpacked, every layer compressed) under GNU time, one after the
# other, each cache removed before the next. The first target is the reference: the closing
# lines print every other target's peak RSS and image size as multiples of its.
#
# Usage:
#   bash benches/peak_memory.sh [TARGET...]     default: mlrun models-gpu
#
# Knobs: OCI_BUILD_BIN=PATH (else `cargo build --release` first), TMPDIR (the caches and
# layouts go there: models-gpu needs about 25 GB). Tools: GNU time (`apt-get install -y time`).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(mlrun models-gpu); fi
[ -x /usr/bin/time ] || { echo "error: GNU time (/usr/bin/time) is needed" >&2; exit 2; }
if [ -z "${OCI_BUILD_BIN:-}" ]; then
    (cd "$here" && cargo build --release --locked --quiet)
    OCI_BUILD_BIN=$here/target/release/oci-build
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/peak-memory.XXXXXX")
trap 'rm -rf "$work"' EXIT

printf '%-14s %8s %8s %8s %9s %10s\n' target wall_s user_s sys_s peak_MiB blobs_MiB
declare -a peaks sizes
for target in "${targets[@]}"; do
    rm -rf "$work/cache" "$work/out"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
        "$OCI_BUILD_BIN" -q -C "$here" --cache-dir "$work/cache" build "$target" --locked \
        --output "oci:$work/out" || { echo "error: building $target failed" >&2; exit 1; }
    read -r wall user sys rss <"$work/time"
    blobs=$(du -sm --apparent-size "$work/out/blobs" | cut -f1)
    peaks+=("$rss")
    sizes+=("$blobs")
    printf '%-14s %8.1f %8.1f %8.1f %9d %10d\n' "$target" "$wall" "$user" "$sys" \
        $((rss / 1024)) "$blobs"
done
rm -rf "$work/cache" "$work/out"

echo
for i in "${!targets[@]}"; do
    [ "$i" -eq 0 ] && continue
    printf '%s / %s: peak %.2fx for an image %.1fx the size\n' "${targets[$i]}" "${targets[0]}" \
        "$(echo "${peaks[$i]} / ${peaks[0]}" | bc -l)" "$(echo "${sizes[$i]} / ${sizes[0]}" | bc -l)"
done
