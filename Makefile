# MLRun's familiar image targets, built by oci-build instead of docker. The variables are
# MLRun's own and reach the recipes through the environment:
#   make docker-images MLRUN_VERSION=1.12.1 MLRUN_DOCKER_REGISTRY=registry.example:5000/
#   make mlrun jupyter PUSH=1
MLRUN_VERSION ?= unstable
MLRUN_DOCKER_REPO ?= mlrun
MLRUN_DOCKER_REGISTRY ?=
export MLRUN_VERSION MLRUN_DOCKER_REPO MLRUN_DOCKER_REGISTRY

OCI_BUILD ?= cargo run --release --quiet --
# PUSH=1 pushes each image to its name; otherwise images go to the OCI layout in OUTPUT.
OUTPUT ?= out
ifeq ($(PUSH),1)
DESTINATION := --push
else
DESTINATION := --output oci:$(OUTPUT)
endif

IMAGES := mlrun api jupyter base base-legacy models models-legacy models-gpu models-gpu-legacy ui

.PHONY: docker-images $(IMAGES) lock targets push-images oci-build-image oci-build-binaries

docker-images:
	$(OCI_BUILD) build $(IMAGES) $(DESTINATION)

push-images:
	$(MAKE) docker-images PUSH=1

$(IMAGES):
	$(OCI_BUILD) build $@ $(DESTINATION)

lock:
	$(OCI_BUILD) lock $(IMAGES)

targets:
	$(OCI_BUILD) targets

# The oci-build image (recipes/oci-build.toml): release binaries for each platform's Rust
# target, then the image of them, built by the amd64 one.
#   make oci-build-image                             # amd64 and arm64, into $(OUTPUT)
#   make oci-build-image PUSH=1 MLRUN_DOCKER_REGISTRY=registry.example:5000/
#   make oci-build-image OCI_BUILD_PLATFORMS=linux/amd64   # no cross toolchain needed
# arm64 needs `rustup target add aarch64-unknown-linux-gnu` and a cross C compiler for the
# C parts (zstd, liblzma, libdeflate, ring): Debian's gcc-aarch64-linux-gnu.
OCI_BUILD_PLATFORMS ?= linux/amd64,linux/arm64
OCI_BUILD_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
export OCI_BUILD_VERSION
AARCH64_GCC ?= aarch64-linux-gnu-gcc

oci-build-binaries:
	cargo build --release --locked --target x86_64-unknown-linux-gnu
ifneq ($(findstring linux/arm64,$(OCI_BUILD_PLATFORMS)),)
	CC_aarch64_unknown_linux_gnu=$(AARCH64_GCC) \
	AR_aarch64_unknown_linux_gnu=$(AARCH64_GCC:gcc=ar) \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$(AARCH64_GCC) \
	  cargo build --release --locked --target aarch64-unknown-linux-gnu
endif

oci-build-image: oci-build-binaries
	OCI_BUILD_TARGET_DIR=target target/x86_64-unknown-linux-gnu/release/oci-build \
	  build oci-build --platform $(OCI_BUILD_PLATFORMS) $(DESTINATION)
