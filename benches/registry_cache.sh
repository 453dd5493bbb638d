#!/usr/bin/env bash
# A cold CI runner with a warm registry layer cache against a cold runner without one, on the
# mlrun target of this repository (built from the committed lock): wall time, the size of the
# runner's cache directory afterwards (what it downloaded and built), layers built and mounted,
# and bytes the push uploaded.
#
# Usage:
#   bash benches/registry_cache.sh [TARGET]            default: mlrun
#
# Environment:
#   OCI_BUILD_BIN=PATH  use this binary instead of `cargo build --release`
#   TMPDIR              where the registry's storage, the caches and outputs go
#
# A docker-registry on 127.0.0.1 is started for the run. The first build (not timed) fills the
# cache repository (`--cache-to`); then each runner starts from an empty --cache-dir and pushes
# the image to the same registry: "cold" knows no registry cache, "warm" has --cache-from.
# Packages come from the host's apt and pip configuration, as in any build.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
target=${1:-mlrun}

for tool in docker-registry python3 curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 2; }
done
if [ -n "${OCI_BUILD_BIN:-}" ]; then
    bin=$OCI_BUILD_BIN
else
    (cd "$repo_root" && cargo build --release --quiet)
    bin=$repo_root/target/release/oci-build
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-registry-cache-bench.XXXXXX")
registry_pid=
cleanup() {
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: "$work/storage"
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
done

registry=127.0.0.1:$port
cache_repo=$registry/ci/oci-build-cache
now() { date +%s.%N; }

# runner NAME ARGS...: a build on an empty cache, pushed to $registry/bench/NAME; prints
# "seconds cache-bytes report.json".
runner() {
    local name=$1
    shift
    local cache=$work/cache-$name
    rm -rf "$cache"
    local start
    start=$(now)
    "$bin" -q -C "$repo_root" --cache-dir "$cache" build "$target" --locked --json \
        --output "docker://$registry/bench/$name:1" "$@" >"$work/$name.json"
    local elapsed
    elapsed=$(echo "$(now) - $start" | bc)
    echo "$elapsed $(du -sb "$cache" | cut -f1) $work/$name.json"
}

echo "filling the cache repository ..." >&2
runner fill --cache-to "$cache_repo" >/dev/null
echo "cold runner, no registry cache ..." >&2
read -r cold_s cold_bytes cold_json < <(runner cold)
echo "cold runner, --cache-from ..." >&2
read -r warm_s warm_bytes warm_json < <(runner warm --cache-from "$cache_repo")

report() {
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))[0]
pushed = r["pushed"][0]
found = r.get("registry_cache", {}).get("layers_found", 0)
print(r["digest"], r["layers_built"], found, pushed["blobs_mounted"], pushed["bytes_uploaded"])
PY
}
read -r cold_digest cold_built _ cold_mounted cold_up < <(report "$cold_json")
read -r warm_digest warm_built warm_found warm_mounted warm_up < <(report "$warm_json")

printf '\n%s from the lock, pushed to a local docker-registry, %s cores\n' "$target" "$(nproc)"
printf '%-28s %9s %14s %13s %8s %15s\n' runner seconds "cache bytes" "layers built" mounted "uploaded bytes"
printf '%-28s %9.1f %14s %13s %8s %15s\n' "cold, no registry cache" "$cold_s" "$cold_bytes" "$cold_built" "$cold_mounted" "$cold_up"
printf '%-28s %9.1f %14s %13s %8s %15s\n' "cold, --cache-from" "$warm_s" "$warm_bytes" "$warm_built ($warm_found found)" "$warm_mounted" "$warm_up"
[ "$cold_digest" = "$warm_digest" ] && echo "same image: $warm_digest" || echo "DIFFERENT images: $cold_digest $warm_digest"
