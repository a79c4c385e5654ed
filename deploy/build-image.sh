#!/usr/bin/env bash
# Builds the Loupe image with podman: the base image (deploy/base-image.sh, cached by its recipe's hash),
# the context (deploy/stage.sh, from this bootstrapped checkout), then deploy/Containerfile.
#   deploy/build-image.sh [TAG]        default localhost/loupe:dev; prints TAG
# Podman runs with runc and explicit ulimits: crun fails in VMs with hybrid cgroups, and the default
# nofile/nproc limits of such hosts are too small for the engine's threads.
set -euo pipefail
tag=${1:-localhost/loupe:dev}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base=$(bash deploy/base-image.sh)
ctx=$(mktemp -d "${TMPDIR:-/tmp}/loupe-image-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
bash deploy/stage.sh "$ctx" 2>/dev/null
# --format docker: OCI image configs have no HEALTHCHECK; the docker format keeps it (podman honours it).
podman --runtime runc build --quiet --layers=false --format docker --build-arg "BASE=$base" \
  --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
  -f deploy/Containerfile -t "$tag" "$ctx" >/dev/null
echo "$tag"
