#!/usr/bin/env bash
# GPU smoke check, for any Linux machine with an NVIDIA GPU and driver: builds a small image
# (the Python base and NVIDIA's CUDA runtime wheel), unpacks it, and in a chroot that binds the
# host's driver libraries and /dev/nvidia* (what the NVIDIA container toolkit does) calls
# cudaGetDeviceCount and cudaMalloc through ctypes, printing what it found.
#
# Run as root (chroot, bind mounts):  bash gpu-smoke/run.sh
# OCI_BUILD=path/to/oci-build uses that binary instead of `cargo run --release`.
# GPU_SMOKE_ROOTFS=DIR takes the image already built and unpacked there (for a GPU machine that
# cannot reach the package archives: build and unpack it elsewhere, copy the directory over).
# `bash gpu-smoke/run.sh --frameworks` also builds ml-models-gpu from the committed lock
# (gigabytes of wheels) and checks in it that torch sees the GPU
# (`torch.cuda.is_available()`) and TensorFlow lists it (`tf.config.list_physical_devices`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cuda-smoke.XXXXXX")
mounts=()
cleanup() {
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

frameworks=0
[ "${1:-}" = "--frameworks" ] && frameworks=1

oci_build() {
    if [ -n "${OCI_BUILD:-}" ]; then
        "$OCI_BUILD" "$@"
    else
        (cd "$here/.." && cargo run --release --quiet -- "$@")
    fi
}

if [ -n "${GPU_SMOKE_ROOTFS:-}" ]; then
    rootfs=$GPU_SMOKE_ROOTFS
else
    oci_build -C "$here" build cuda-smoke --output "oci:$work/image"
    umoci unpack --image "$work/image:oci-build/cuda-smoke:latest" "$work/bundle" >/dev/null
    rootfs=$work/bundle/rootfs
fi

bind() { # bind SOURCE into $rootfs at the same path
    local target=$rootfs$1
    if [ -d "$1" ]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; touch "$target"; fi
    mount --bind "$1" "$target"
    mounts+=("$target")
}
# What the NVIDIA container toolkit gives a container: the devices and the driver's
# user-space libraries, mounted into $rootfs.
give_gpu() {
    shopt -s nullglob
    devices=(/dev/nvidia*)
    [ "${#devices[@]}" -gt 0 ] || { echo "no /dev/nvidia* devices: is the NVIDIA driver loaded?" >&2; exit 1; }
    for device in "${devices[@]}"; do [ -c "$device" ] && bind "$device"; done
    # The driver's user-space libraries, where the container toolkit would mount them.
    mkdir -p "$rootfs/usr/local/nvidia/lib64"
    found=0
    declare -A given=()
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64; do
        for lib in "$dir"/libcuda.so* "$dir"/libnvidia-ptxjitcompiler.so* "$dir"/libnvidia-ml.so*; do
            [ -e "$lib" ] || continue
            name=$(basename "$lib")
            # The same library may sit in two of these directories (a container's toolkit
            # mounts it read-only at /usr/local/nvidia too): the first one found is given.
            [ -z "${given[$name]:-}" ] || continue
            given[$name]=1
            touch "$rootfs/usr/local/nvidia/lib64/$name"
            mount --bind "$(readlink -f "$lib")" "$rootfs/usr/local/nvidia/lib64/$name"
            mounts+=("$rootfs/usr/local/nvidia/lib64/$name")
            found=1
        done
    done
    [ "$found" = 1 ] || { echo "no libcuda.so found on the host" >&2; exit 1; }
}
# What a runtime gives every container: libcuda reads /proc and opens /dev/null.
give_basics() {
    for device in /dev/null /dev/zero /dev/urandom; do bind "$device"; done
    mkdir -p "$rootfs/proc" && mount -t proc proc "$rootfs/proc" && mounts+=("$rootfs/proc")
}
shopt -s nullglob
give_gpu
give_basics
chroot "$rootfs" /usr/bin/env -i LD_LIBRARY_PATH=/usr/local/nvidia/lib64 PATH=/usr/bin:/bin \
    python3 - <<'PY'
import ctypes, glob
paths = glob.glob("/usr/local/lib/python3*/dist-packages/nvidia/cuda_runtime/lib/libcudart.so*")
cudart = ctypes.CDLL(paths[0])
def check(what, status):
    if status != 0:
        cudart.cudaGetErrorString.restype = ctypes.c_char_p
        raise SystemExit(f"{what} failed: {cudart.cudaGetErrorString(status).decode()}")
runtime, driver, count = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
check("cudaRuntimeGetVersion", cudart.cudaRuntimeGetVersion(ctypes.byref(runtime)))
check("cudaDriverGetVersion", cudart.cudaDriverGetVersion(ctypes.byref(driver)))
check("cudaGetDeviceCount", cudart.cudaGetDeviceCount(ctypes.byref(count)))
pointer = ctypes.c_void_p()
check("cudaMalloc", cudart.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(64 << 20)))
check("cudaFree", cudart.cudaFree(pointer))
print(f"libcudart: {paths[0]}")
print(f"CUDA runtime {runtime.value}, driver {driver.value}, devices: {count.value}")
print(f"cudaMalloc of 64 MiB on device 0: ok ({pointer.value:#x})")
PY

if [ "$frameworks" = 1 ]; then
    oci_build -C "$here/.." build --locked models-gpu --output "oci:$work/models-gpu"
    name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$work/models-gpu/index.json")
    umoci unpack --image "$work/models-gpu:$name" "$work/models-bundle" >/dev/null
    rootfs=$work/models-bundle/rootfs
    give_gpu
    give_basics
    chroot "$rootfs" /usr/bin/env -i LD_LIBRARY_PATH=/usr/local/nvidia/lib64 \
        PATH=/usr/local/bin:/usr/bin:/bin python3 - <<'PY'
import torch
import tensorflow as tf
print(f"torch {torch.__version__}: CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
assert torch.cuda.is_available(), "torch sees no GPU"
x = torch.ones(1024, 1024, device="cuda")
print(f"torch matmul on {torch.cuda.get_device_name(0)}: {float((x @ x).sum())}")
gpus = tf.config.list_physical_devices("GPU")
print(f"tensorflow {tf.__version__}: GPUs {gpus}")
assert gpus, "TensorFlow sees no GPU"
PY
fi
