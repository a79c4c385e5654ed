#!/usr/bin/env bash
# Builds the base image of deploy/Containerfile locally (no registry is needed or reachable): a Debian
# bookworm minbase root file system made by mmdebstrap from Debian's own mirror, with the engine's runtime
# libraries (oneDNN, OpenMP, the OpenCL loader oneDNN links; libstdc++ for Node and the addons), imported
# into podman. The tag is the hash of this recipe, so a machine builds it once (~1-2 min) and reuses it
# until the recipe changes. Prints the image reference on stdout.
#   LOUPE_DEBIAN_MIRROR   mirror to use (default http://deb.debian.org/debian)
set -euo pipefail

SUITE=bookworm
MIRROR=${LOUPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The engine's runtime dependencies (ldd native/build/Release/loupe_native.node), Node's, and tini (PID 1:
# forwards SIGTERM, reaps the training workers). Docs, man pages and locales are left out.
ARGS=(--variant=minbase --include=libdnnl2,libgomp1,ocl-icd-libopencl1,libstdc++6,tini
  '--dpkgopt=path-exclude=/usr/share/doc/*' '--dpkgopt=path-exclude=/usr/share/man/*'
  '--dpkgopt=path-exclude=/usr/share/locale/*' '--dpkgopt=path-exclude=/usr/share/info/*'
  "$SUITE")
# The tag hashes the recipe (not the mirror: any mirror gives the same release).
TAG=$(printf '%s\n' "${ARGS[@]}" | sha256sum | cut -c1-16)
IMAGE=localhost/loupe-base:$TAG

if podman image exists "$IMAGE"; then
  echo "$IMAGE"
  exit 0
fi
for c in podman mmdebstrap; do
  command -v "$c" >/dev/null || { echo "base-image: '$c' is missing (Debian: apt-get install podman runc mmdebstrap)" >&2; exit 3; }
done
echo "base-image: building $IMAGE (mmdebstrap ${ARGS[*]} - $MIRROR)" >&2
mmdebstrap --quiet "${ARGS[@]}" - "$MIRROR" | podman import --quiet - "$IMAGE" >/dev/null
echo "$IMAGE"
