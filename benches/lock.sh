#!/usr/bin/env bash
# Locking pip layers: `oci-build lock TARGET...` against `uv pip compile` on the same
# requirement sets, both with warm caches.
#
# Usage:
#   bash benches/lock.sh [TARGET...]
#
# The default targets are every one with a pip layer that `lock --all` locks without a source
# checkout: mlrun jupyter base base-legacy models models-legacy models-gpu models-gpu-legacy
# (api needs MLRUN_SOURCE_DIR; ui and the oci-build image have no pip layer).
#
# For every pip layer of the targets the script writes what the layer asks for as uv input:
# its packages (with the recipe's `pin`s as `==`), its constraints file, and every package the
# lock pins in the pip layers below it as `==` constraints (oci-build keeps what is installed
# below at its version, which is what such a constraint does). uv gets the image's Python
# version and a manylinux platform of the image's glibc, and the index this machine configures
# (UV_INDEX_URL, else PIP_INDEX_URL, else pip's `index-url`, else both tools' default).
#
# The recipes are copied to a temporary project first: `lock` rewrites the copy's lock, never
# the checkout's. One warm-up run of each side fills its cache (oci-build's --cache-dir, uv's
# --cache-dir, both under the temporary directory unless BENCH_CACHE names one to keep); then
# BENCH_RUNS rounds (default 3) run both sides, interleaved, and the best wall time of each is
# kept. oci-build's time includes its Debian layers' resolution (from the warm cache).
#
# Knobs: BENCH_RUNS, BENCH_CACHE=DIR (caches kept between runs), OCI_BUILD_BIN=PATH (else
# `cargo build --release` first), TMPDIR. Tools: bash, python3 (3.11, for tomllib), uv.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
runs=${BENCH_RUNS:-3}
case "$runs" in
    '' | *[!0-9]* | 0) echo "error: BENCH_RUNS must be a positive whole number" >&2; exit 2 ;;
esac
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(mlrun jupyter base base-legacy models models-legacy models-gpu models-gpu-legacy); fi
note() { printf '%s\n' "$*" >&2; }
command -v uv >/dev/null || { note "error: uv not found"; exit 2; }
python3 -c 'import tomllib' 2>/dev/null || { note "error: python3 with tomllib (3.11+) needed"; exit 2; }

if [ -n "${OCI_BUILD_BIN:-}" ]; then
    bin=$OCI_BUILD_BIN
else
    (cd "$repo_root" && cargo build --release --locked --quiet)
    bin=$repo_root/target/release/oci-build
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oci-build-lock-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cache=${BENCH_CACHE:-$work/cache}
mkdir -p "$cache/oci-build" "$cache/uv" "$work/project" "$work/uv"
cp -r "$repo_root/recipes" "$repo_root/layers" "$work/project/"

# The index both tools use.
if [ -z "${UV_INDEX_URL:-}" ]; then
    if [ -n "${PIP_INDEX_URL:-}" ]; then
        export UV_INDEX_URL=$PIP_INDEX_URL
    elif configured=$(python3 -m pip config get global.index-url 2>/dev/null) && [ -n "$configured" ]; then
        export UV_INDEX_URL=$configured
    fi
fi

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
cpu_before=$(busy)

# One uv input per pip layer: NAME.in (requirements), NAME.constraints, NAME.args.
python3 - "$work/project" "$work/uv" "${targets[@]}" <<'PY'
import json, os, re, sys, tomllib

project, out, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
read = lambda path: tomllib.load(open(path, "rb"))
common = read(os.path.join(project, "recipes/_vars.toml")).get("vars", {})
lock = read(os.path.join(project, "recipes/recipes.lock"))
# Python and glibc of the family's bases (Debian bookworm: 3.11 and 2.36; bullseye: 3.9, 2.31).
PYTHONS = {"python-3.11": ("3.11", "2_36"), "python-3.9": ("3.9", "2_31")}

def definition(name):
    """The recipe or layers/ file of a target, and its variant's table."""
    for directory in ("recipes", "layers"):
        for file in sorted(os.listdir(os.path.join(project, directory))):
            if not file.endswith(".toml") or file.startswith("_"):
                continue
            stem = file[:-5]
            data = read(os.path.join(project, directory, file))
            if stem == name:
                return data, {}
            for variant, table in data.get("variants", {}).items():
                if name == f"{stem}-{variant}" or name == f"{stem}-{table.get('suffix', variant)}":
                    return data, table
    raise SystemExit(f"error: no recipe or layer named {name}")

def chain(name):
    """The target and every base below it, top first."""
    names = []
    while name and name not in PYTHONS:
        names.append(name)
        data, variant = definition(name)
        name = variant.get("from", data.get("from"))
    return names, PYTHONS.get(name)

def expand(text, variables, depth=0):
    text = re.sub(r"\$\{(\w+)(:\w+)?\}", lambda m: str(variables.get(m.group(1), "")), text)
    return expand(text, variables, depth + 1) if "${" in text and depth < 8 else text

def is_version(text):
    return re.fullmatch(r"\d+(\.\d+)*([a-z]+\d*)?(\.post\d+)?(\.dev\d+)?", text) is not None

def pins_of(target, layer):
    return [f"{p['name']}=={p['version']}" for entry in lock.get("pip", [])
            if entry["target"] == target and entry["layer"] == layer for p in entry["packages"]]

for target in sys.argv[3:]:
    names, python = chain(target)
    if python is None:
        raise SystemExit(f"error: {target} is not on a Python base this script knows")
    below = []
    for name in reversed(names):
        data, variant = definition(name)
        variables = {**common, **{k: v for k, v in data.get("vars", {}).items() if isinstance(v, str)},
                     **variant.get("vars", {})}
        # A layer whose `when` is empty is left out, and the lock numbers the others.
        layers = [l for l in data.get("layer", []) if expand(l.get("when", "x"), variables)]
        for index, layer in enumerate(layers, start=1):
            if "pip" not in layer:
                continue
            if name == target:
                pip = layer["pip"]
                # A pin that is not a version (`unstable`) leaves the package as it is asked.
                pins = {k: expand(v, variables) for k, v in pip.get("pin", {}).items()}
                pins = {k: v for k, v in pins.items() if is_version(v)}
                lines = [f"{p}=={pins[p]}" if p in pins else expand(p, variables)
                         for p in pip.get("packages", [])]
                constraints = list(below)
                if pip.get("constraints"):
                    path = os.path.join(project, expand(pip["constraints"], variables))
                    constraints += [l.strip() for l in open(path) if l.strip() and not l.startswith("#")]
                stem = os.path.join(out, f"{target}.{index}")
                open(stem + ".in", "w").write("\n".join(lines) + "\n")
                open(stem + ".constraints", "w").write("\n".join(constraints) + "\n")
                open(stem + ".args", "w").write(
                    f"--python-version {python[0]} --python-platform x86_64-manylinux_{python[1]}\n")
            below += pins_of(name, index)
PY

ours() { "$bin" -C "$work/project" --cache-dir "$cache/oci-build" -q lock "${targets[@]}" >/dev/null; }
theirs() {
    local input
    for input in "$work"/uv/*.in; do
        # shellcheck disable=SC2046 # the args file holds whitespace-separated options
        uv pip compile -q --cache-dir "$cache/uv" $(cat "${input%.in}.args") \
            -c "${input%.in}.constraints" "$input" -o "${input%.in}.txt"
    done
}
seconds() { local start end; start=$(date +%s.%N); "$@"; end=$(date +%s.%N); echo "$end - $start" | bc; }

note "warming both caches (targets: ${targets[*]}; $(ls "$work"/uv/*.in | wc -l) pip layers)"
ours
theirs
best_ours=; best_uv=
for round in $(seq "$runs"); do
    t=$(seconds ours)
    u=$(seconds theirs)
    note "round $round: oci-build ${t}s, uv ${u}s"
    if [ -z "$best_ours" ] || [ "$(echo "$t < $best_ours" | bc)" = 1 ]; then best_ours=$t; fi
    if [ -z "$best_uv" ] || [ "$(echo "$u < $best_uv" | bc)" = 1 ]; then best_uv=$u; fi
done

cpu_after=$(busy)
read -r b0 t0 <<<"$cpu_before"; read -r b1 t1 <<<"$cpu_after"
printf '%-32s %8.2f s\n' "oci-build lock ${targets[*]}" "$best_ours"
printf '%-32s %8.2f s\n' "uv pip compile (same sets)" "$best_uv"
printf 'ratio oci-build / uv: %.2f\n' "$(echo "$best_ours / $best_uv" | bc -l)"
printf 'CPUs busy during the bench: %d%% (of %d); this bench itself uses some\n' \
    "$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))" "$(nproc)"
