#!/usr/bin/env bash
# A cold and a warm `oci-build build mlrun --locked` (wall time, CPU time, peak RSS), against a
# peer measured in the same rounds: mmdebstrap + buildah where both are installed, else the
# same locked packages fetched and unpacked with the usual tools (curl, dpkg-deb, pip install
# --target) and each layer packed with `tar | pigz`. See benches/README.md.
#
# Each cold round downloads every package of the image (a few hundred MB) from the configured
# mirrors, so rounds are few: BENCH_RUNS (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-2}
target=mlrun
work=$(mktemp -d "${TMPDIR:-/tmp}/cold-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "${OCI_BUILD_BIN:-}" ]; then
    (cd "$here" && cargo build --release --locked --quiet)
    OCI_BUILD_BIN=$here/target/release/oci-build
fi
for tool in /usr/bin/time python3 curl dpkg-deb pigz tar; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

busy() { # percent of CPU time not idle over one second
    read -r _ a b c d e f g _ < /proc/stat; sleep 1
    read -r _ a2 b2 c2 d2 e2 f2 g2 _ < /proc/stat
    local total=$(((a2 + b2 + c2 + d2 + e2 + f2 + g2) - (a + b + c + d + e + f + g)))
    echo $((100 * (total - (d2 - d)) / total))
}

# Runs a command under GNU time; prints "wall user sys rss_kib".
timed() {
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        cat "$work/err" >&2
        return 1
    }
    cat "$work/time"
}

# The peer's inputs from the lock: for each layer of the target's chain, the packages as
# `deb FILENAME SHA256` or `pip NAME==VERSION SHA256` lines, layers separated by `layer N`.
python3 - "$here/recipes/recipes.lock" >"$work/peer-inputs" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
chain = [("debian", "python-3.11", 1), ("debian", "python-3.11", 2),
         ("debian", "mlrun-tools", 1), ("pip", "mlrun-runtime", 1)]
for n, (kind, target, layer) in enumerate(chain, 1):
    entry = next(e for e in lock[kind] if e["target"] == target and e["layer"] == layer
                 and e.get("arch", e.get("platform")) in ("amd64", "linux/amd64"))
    print(f"layer {n}")
    for p in entry["packages"]:
        if kind == "debian":
            print("deb", p["filename"], p["sha256"])
        else:
            print("pip", f'{p["name"]}=={p["version"]}', p["sha256"])
PY
# The archive base URIs the host's apt configuration names (deb822 and one-line forms).
bases=$( (awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
          awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
              /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true) | sort -u)

# The peer, as a script of its own (GNU time counts its children): per layer, the packages
# fetched 4 at a time and checked against the lock, unpacked (dpkg-deb -x; pip install
# --target, which also builds the one sdist), and the layer packed with tar | pigz -6 -p2.
cat >"$work/peer.sh" <<'SH'
set -euo pipefail
inputs=$1 out=$2 bases=$3
rm -rf "$out"; mkdir -p "$out"
awk -v out="$out" '
    $1 == "layer" { n = $2; system("mkdir -p " out "/root" n " " out "/debs" n); next }
    $1 == "deb" { print $2, $3 > (out "/debs" n ".list") }
    $1 == "pip" { print $2, "--hash=sha256:" $3 > (out "/pip" n ".txt") }' "$inputs"
for dir in "$out"/root*; do
    n=${dir##*/root}
    if [ -s "$out/debs$n.list" ]; then
        BASES=$bases DEBS=$out/debs$n xargs -P4 -L1 sh -c '
            name=$(basename "$0")
            for base in $BASES; do
                curl -fsS -o "$DEBS/$name" "$base/$0" 2>/dev/null && break
            done
            echo "$1  $DEBS/$name" | sha256sum -c --quiet' <"$out/debs$n.list"
        for deb in "$out/debs$n"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
    fi
    if [ -s "$out/pip$n.txt" ]; then
        pip3 install -q --no-deps --no-compile --require-hashes --no-cache-dir \
            --disable-pip-version-check --root-user-action=ignore \
            --target "$dir/usr/local/lib/python3.11/dist-packages" -r "$out/pip$n.txt"
    fi
    tar --sort=name -cf - -C "$dir" . | pigz -6 -p2 >"$out/layer$n.tar.gz"
done
SH

if command -v mmdebstrap >/dev/null && command -v buildah >/dev/null; then
    echo "note: mmdebstrap and buildah are installed, but this script's peer is the tool" \
        "pipeline below; add them as a peer to compare against them" >&2
fi

echo "oci-build: $OCI_BUILD_BIN"
echo "CPUs: $(nproc); busy before: $(busy)%"
printf '%-26s %8s %8s %8s %10s\n' method wall_s user_s sys_s peak_MiB
best_cold="" best_peer=""
for round in $(seq "$runs"); do
    cache=$work/cache$round
    read -r wall user sys rss < <(timed "$OCI_BUILD_BIN" -C "$here" --cache-dir "$cache" -q \
        build "$target" --locked --output "oci:$work/out$round")
    printf '%-26s %8s %8s %8s %10d\n' "oci-build cold" "$wall" "$user" "$sys" $((rss / 1024))
    best_cold=$(printf '%s\n%s\n' "$wall" "$best_cold" | grep . | sort -g | head -1)
    read -r wall user sys rss < <(timed "$OCI_BUILD_BIN" -C "$here" --cache-dir "$cache" -q \
        build "$target" --locked --output "oci:$work/out$round")
    printf '%-26s %8s %8s %8s %10d\n' "oci-build warm" "$wall" "$user" "$sys" $((rss / 1024))
    rm -rf "$cache" "$work/out$round"
    read -r wall user sys rss < <(timed bash "$work/peer.sh" "$work/peer-inputs" "$work/peer" "$bases")
    printf '%-26s %8s %8s %8s %10s\n' "peer: curl+dpkg-deb+pip" "$wall" "$user" "$sys" -
    best_peer=$(printf '%s\n%s\n' "$wall" "$best_peer" | grep . | sort -g | head -1)
    rm -rf "$work/peer"
done
echo "CPUs busy after: $(busy)%"
awk -v c="$best_cold" -v p="$best_peer" 'BEGIN {
    printf "best cold %.1f s, best peer %.1f s: oci-build takes %.2fx the peer'"'"'s time (target: cold <= 30 s)\n", c, p, c / p }'
