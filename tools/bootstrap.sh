#!/usr/bin/env bash
# Brings a checkout to "ready": system packages, node_modules, native addon + TypeScript builds, and the
# pinned model weights. Idempotent and fast when everything is already there (each step checks first):
#   1. apt packages for the native engine (installed when missing and we are root; else named)
#   2. npm ci, only when package-lock.json changed since the last install
#   3. nx run-many -t build (native addon via cmake-js, then @loupe/core, then the CLI; Nx-cached)
#   4. the ResNet-50 weights into $LOUPE_HOME (default ~/.cache/loupe), integrity-checked
# --tests (npm test): step 1 also installs the real components the test suites run (PostgreSQL, nginx,
# podman); the demo and the product need none of them.
# Environment: LOUPE_SKIP_APT=1, LOUPE_SKIP_WEIGHTS=1 skip steps 1 and 4.
set -euo pipefail
with_tests=0
[[ "${1:-}" == --tests ]] && with_tests=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
started=$SECONDS
log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false
export ONNXRUNTIME_NODE_INSTALL=skip  # onnxruntime-node's CPU binary ships in the package: no download

# --- 1. system packages ----------------------------------------------------------------------------
# cmake + g++ + make/ninja build the engine (OpenMP comes with g++); libdnnl-dev is the oneDNN CPU
# backend; zlib1g-dev lets the engine tests read the reference PNGs; ccache lets native:test (engine +
# tests, in native/build-test) reuse the objects of native:build (the addon, in native/build).
# CUDA is optional (compiled in when nvcc exists).
APT_PACKAGES=(cmake g++ make ninja-build ccache pkg-config libdnnl-dev zlib1g-dev)
# The fleet tests (apps/server/test/{postgres,fleet,container}.test.ts) run real components: PostgreSQL,
# nginx as the gRPC load balancer, podman with runc (crun fails in VMs with hybrid cgroups) and mmdebstrap
# for the image's base. They are tools of the tests and of deploy/, not of the product.
((with_tests)) && APT_PACKAGES+=(postgresql nginx-light podman runc mmdebstrap uidmap)
if [[ "${LOUPE_SKIP_APT:-0}" != 1 ]]; then
  if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} > 0)); then
      if [[ $(id -u) == 0 ]]; then
        log "installing system packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      else
        die "missing system packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}"
      fi
    fi
  else
    for c in cmake g++ make; do
      command -v "$c" >/dev/null 2>&1 || die "'$c' not found; install cmake, a C++17 compiler, make and oneDNN (libdnnl) first"
    done
    log "not a Debian system: assuming oneDNN is installed where CMake finds it"
  fi
fi

# --- 2. node and node_modules ------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found: Loupe needs Node.js >= 20.19"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
  die "Node.js $(node -v) is too old: Loupe needs >= 20.19"
stamp_file=node_modules/.loupe-bootstrap-stamp
stamp="$(node -p 'process.version + " " + process.versions.modules') $(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f $stamp_file || "$(cat "$stamp_file")" != "$stamp" ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s' "$stamp" >"$stamp_file"
fi

# --- 3. builds (Nx cache: a no-op when nothing changed) ----------------------------------------------
log "building (nx run-many -t build)"
npx nx run-many -t build --outputStyle=static-failures-only

# --- 4. weights ------------------------------------------------------------------------------------
if [[ "${LOUPE_SKIP_WEIGHTS:-0}" != 1 ]]; then
  node tools/fetch-weights.mjs
fi

log "ready in $((SECONDS - started)) s ($root)"
