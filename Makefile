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

.PHONY: docker-images $(IMAGES) lock targets push-images

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
