#!/usr/bin/env bash
# The GPU device check: build the engine with CUDA, run the GPU tests, benchmark Loupe's CUDA backend
# against a PyTorch peer on the same weights, measure the roofline ceilings, write a report.
#
# Usage (from the repo root, on the GPU machine):
#   OUT=/some/dir bash tools/device-check.sh
# Optional inputs (`bash tools/device-prepare.sh` makes both, on the machine without the GPU):
#   .device/resnet50_fp16.lwts   real weights (LWTS, `loupe_engine_bench --weights model.json --dump-lwts
#                                F --fp16`; else .device/resnet50.lwts or any .device/*.lwts); without
#                                one, seeded weights (seed 0) are dumped here and used
#   .device/reference/           chelsea|coffee|rocket _224.png + .json (top-1 checks, needs real weights)
# Environment:
#   LOUPE_DEVICE_BUDGET_S   total seconds for this script (default 420); steps that no longer fit are
#                           skipped (logged), the report is always written
#   LOUPE_BUILD_DIR         build folder (default native/build-device; reused if it exists)
#   LOUPE_BUILD_JOBS        parallel build jobs (default 16)
#   LOUPE_BENCH_ITERS       timed runs per batch size (default 20)
#   CUDNN_ROOT              cuDNN 9 folder (include/, lib/); default: the pip package nvidia-cudnn-cu13
# Output ($OUT, at most 4 files): device-check.log (everything, live), logs.tar.gz (per-step logs,
# refreshed after every step), results.json, table.md. The table is printed last.
# Every step runs under `timeout` and the script goes on after a failure.
set -u
set -o pipefail

START=$(date +%s)
BUDGET=${LOUPE_DEVICE_BUDGET_S:-420}
DEADLINE=$((START + BUDGET))
RESERVE=25  # kept for the report at the end
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/loupe-device.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
STEPS=$LOGS/steps.jsonl
: > "$STEPS"
BUILD=${LOUPE_BUILD_DIR:-native/build-device}
JOBS=${LOUPE_BUILD_JOBS:-16}
ITERS=${LOUPE_BENCH_ITERS:-20}
BATCHES=1,32,256
PEER=tools/device/torch_resnet50.py
export PYTHONUNBUFFERED=1

exec > >(tee -a "$OUT/device-check.log") 2>&1

say() { echo "[device-check +$(( $(date +%s) - START ))s] $*"; }

save_logs() { tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null || true; }

# step NAME MAX_SECONDS CMD...: runs CMD under timeout (capped by what is left of the budget), its
# output in $LOGS/NAME.log (tail shown here), one JSON line per step in steps.jsonl.
step() {
  local name=$1 max=$2
  shift 2
  local now left t t0 rc dt
  now=$(date +%s)
  left=$((DEADLINE - now - RESERVE))
  t=$max
  if ((left < t)); then t=$left; fi
  if ((t < 10)); then
    say "[$name] SKIPPED: only ${left}s of the budget left"
    echo "{\"step\":\"$name\",\"rc\":null,\"skipped\":true,\"seconds\":0}" >> "$STEPS"
    return 99
  fi
  say "[$name] start (limit ${t}s): $*"
  t0=$(date +%s)
  timeout -k 10 "$t" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  tail -n "${TAIL_LINES:-12}" "$LOGS/$name.log" | sed "s/^/  [$name] /"
  if ((rc == 124 || rc == 137)); then say "[$name] TIMED OUT after ${dt}s"; fi
  say "[$name] rc=$rc in ${dt}s"
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$dt,\"limit\":$t}" >> "$STEPS"
  save_logs
  return $rc
}

# results.json + table.md from whatever has been measured so far (also run midway, so a run cut short
# by an outer timeout still brings a report back).
report() {
  timeout 60 python3 "$PEER" report --logdir "$LOGS" --steps "$STEPS" --env "$LOGS/env.json" \
    --batches "$BATCHES" --out-json "$OUT/results.json" --out-md "$OUT/table.md" > "$LOGS/report.log" 2>&1
  local rc=$?
  if ((rc != 0)); then
    say "report failed (rc=$rc):"
    tail -n 20 "$LOGS/report.log"
    # A minimal results.json so something machine-readable comes back.
    { echo '{"report_failed":true,"steps":['; paste -sd, "$STEPS"; echo ']}'; } > "$OUT/results.json"
  fi
}

say "start: budget ${BUDGET}s, OUT=$OUT, work $WORK, repo $(pwd)"

# ---- 0. the machine ----
if command -v nvidia-smi > /dev/null; then
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv 2>/dev/null
else
  say "nvidia-smi not found: no GPU driver here (the GPU steps will report 'no GPU')"
fi
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=$PATH:/usr/local/cuda/bin; fi
step env 40 python3 - "$LOGS/env.json" <<'EOF'
import json, os, subprocess, sys
env = {}
def run(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        return "error: %r" % e
env["nvidia_smi"] = run("nvidia-smi -L")
env["gpu"] = run("nvidia-smi --query-gpu=name --format=csv,noheader").splitlines()[0:1]
env["gpu"] = env["gpu"][0] if env["gpu"] else ""
env["driver"] = run("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
env["nvcc"] = run("nvcc --version | tail -2")
env["cmake"] = run("cmake --version | head -1")
env["cpus"] = os.cpu_count()
try:
    import torch
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["torch_cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env["cuda_available"] = torch.cuda.is_available()
except Exception as e:
    env["torch"] = "import failed: %r" % e
print(json.dumps(env, indent=1))
json.dump(env, open(sys.argv[1], "w"), indent=1)
EOF

python3 "$PEER" costs 2>&1 | sed 's/^/[resnet50 costs] /'

# ---- 1. cuDNN from the pip package (or CUDNN_ROOT) ----
if [ -z "${CUDNN_ROOT:-}" ]; then
  CUDNN_ROOT=$(python3 - 2>/dev/null <<'EOF'
import os
try:
    import nvidia.cudnn as m
    f = getattr(m, "__file__", None)
    print(os.path.dirname(f) if f else list(m.__path__)[0])
except Exception:
    pass
EOF
)
fi
if [ -z "${CUDNN_ROOT:-}" ] || [ ! -e "$CUDNN_ROOT/lib/libcudnn.so.9" ]; then
  # Fallback: look for the library in Python's site-packages and the usual system folders.
  SITE=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  f=$(timeout 15 find $SITE /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64 /opt -maxdepth 5 \
      -name 'libcudnn.so.9' 2>/dev/null | head -n 1)
  if [ -n "$f" ]; then
    CUDNN_ROOT=$(dirname "$(dirname "$f")")
    export LOUPE_CUDNN_LIB=$f
  fi
fi
export CUDNN_ROOT=${CUDNN_ROOT:-}
# The pip packages' lib folders (cuDNN's sub-libraries, cuBLAS(Lt), NVRTC for runtime-compiled engines).
NVLIBS=$(python3 - 2>/dev/null <<'EOF'
import glob, os
try:
    import nvidia
    dirs = set()
    for p in nvidia.__path__:
        dirs.update(glob.glob(os.path.join(p, "*", "lib")))
    print(":".join(sorted(dirs)))
except Exception:
    pass
EOF
)
export LD_LIBRARY_PATH="${CUDNN_ROOT:+$CUDNN_ROOT/lib:}${NVLIBS:+$NVLIBS:}${LD_LIBRARY_PATH:-}"
say "CUDNN_ROOT=$CUDNN_ROOT"
say "cudnn.h: $(ls "$CUDNN_ROOT"/include/cudnn.h 2>/dev/null || echo missing); libcudnn: $(ls "$CUDNN_ROOT"/lib/libcudnn.so* 2>/dev/null | tr '\n' ' ')"
grep -h "define CUDNN_M\|define CUDNN_PATCH" "$CUDNN_ROOT"/include/cudnn_version.h 2>/dev/null | tr '\n' ' '; echo

# ---- 2. build ----
step configure 90 cmake -S native -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOUPE_WITH_ONEDNN=OFF -DLOUPE_CUDA_ARCHITECTURES=90 ${CUDNN_ROOT:+-DCUDNN_ROOT=$CUDNN_ROOT}
# -k 0: keep building the other targets when one fails (the report says which).
step build 300 cmake --build "$BUILD" -j "$JOBS" -- -k 0
grep -E "FAILED|error:" "$LOGS/build.log" | head -n 20
BENCH=$BUILD/loupe_engine_bench
[ -x "$BENCH" ] || say "loupe_engine_bench was not built: the Loupe benchmarks will be skipped"

# ---- 3. weights: the real ones if carried, else seeded (seed 0) dumped for both Loupe and torch ----
REAL=0
REAL_W=""
for f in .device/resnet50_fp16.lwts .device/resnet50.lwts .device/*.lwts; do
  if [ -f "$f" ]; then REAL_W=$PWD/$f; break; fi
done
if [ -n "$REAL_W" ]; then
  W=$REAL_W
  REAL=1
  say "weights: real, $W"
else
  W=$WORK/seed0.lwts
  step dump_seeded 60 "$BENCH" --seed 0 --dump-lwts "$W"
  say "weights: seeded (seed 0), $W"
fi
REFDIR=""
if [ -f .device/reference/chelsea.json ]; then
  # A copy with <name>_224.rgb (raw RGB, decoded by PIL) next to the PNGs and JSONs, so the GPU test
  # checks top-1 even where the build found no zlib for its own PNG reader.
  REFDIR=$WORK/reference
  mkdir -p "$REFDIR"
  cp .device/reference/* "$REFDIR"/ 2>/dev/null
  python3 - "$REFDIR" <<'EOF2' || say "PIL decode of the reference PNGs failed (the test falls back to its own PNG reader)"
import sys, os
from PIL import Image
d = sys.argv[1]
for n in ("chelsea", "coffee", "rocket"):
    p = os.path.join(d, n + "_224.png")
    if os.path.exists(p):
        open(os.path.join(d, n + "_224.rgb"), "wb").write(Image.open(p).convert("RGB").tobytes())
EOF2
fi

# ---- 4. GPU tests ----
GPU_TESTS=$(ls native/engine/tests/cuda/*_test.cc 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.cc$//' | paste -sd'|' -)
say "GPU tests: ${GPU_TESTS:-none}"
if [ -n "$GPU_TESTS" ]; then
  TEST_ENV=(LOUPE_CUDA_VERBOSE=1 LOUPE_CUDNN_ALGO_CACHE=$WORK/algo.cache)
  if ((REAL)); then TEST_ENV+=(LOUPE_WEIGHTS=$W); fi
  if [ -n "$REFDIR" ]; then TEST_ENV+=(LOUPE_REFERENCE_DIR=$REFDIR); fi
  TAIL_LINES=40 step ctest 200 env "${TEST_ENV[@]}" ctest --test-dir "$BUILD" -R "^(${GPU_TESTS})\$" \
    -V --timeout 180
fi

# ---- 5. Loupe benchmarks (graphs on), bf16 first ----
loupe_bench() {  # precision tag extra-env...
  local p=$1 tag=$2
  shift 2
  [ -x "$BENCH" ] || return 0
  step "loupe_${p}_${tag}" "${LOUPE_STEP_S:-100}" env LOUPE_CUDNN_ALGO_CACHE="$WORK/algo.cache" \
    LOUPE_CUDA_VERBOSE=1 LOUPE_CUDA_STATS="$LOGS/stats_${tag}.jsonl" "$@" \
    bash -c '"$0" --backend cuda --precision "$1" --weights "$2" --batches "$3" --iters "$4" --warmup 5 --taps fc1000 --json > "$5"' \
    "$BENCH" "$p" "$W" "$BATCHES" "$ITERS" "$LOGS/loupe_bench_${p}_${tag}.json"
  cat "$LOGS/loupe_bench_${p}_${tag}.json" 2>/dev/null
}
loupe_bench bf16 graphs
loupe_bench fp16 graphs
LOUPE_STEP_S=140 loupe_bench fp32 graphs
report

# ---- 6. ceilings, then the PyTorch peer on the same weights ----
step roofline 60 python3 "$PEER" roofline --json "$LOGS/roofline.json"
TAIL_LINES=20 step torch_bench 200 python3 "$PEER" bench --weights "$W" --batches "$BATCHES" \
  --iters "$ITERS" --warmup 5 --json "$LOGS/torch_bench.jsonl"
report

# ---- 7. what graphs buy (eager forward), the ML kernels, the reference check of the peer ----
loupe_bench bf16 eager LOUPE_CUDA_GRAPHS=0
loupe_bench fp32 eager LOUPE_CUDA_GRAPHS=0
if [ -x "$BUILD/loupe_ml_bench" ]; then
  step ml_bench 90 bash -c '"$0" --json > "$1"' "$BUILD/loupe_ml_bench" "$LOGS/ml_bench.json"
  cat "$LOGS/ml_bench.json" 2>/dev/null | head -c 4000; echo
else
  say "loupe_ml_bench not built: skipped"
fi
if ((REAL)) && [ -n "$REFDIR" ]; then
  step torch_verify 90 python3 "$PEER" verify --weights "$W" --dir "$REFDIR" --json "$LOGS/torch_verify.jsonl"
fi

# ---- 8. torch.compile, with whatever time is left ----
left=$((DEADLINE - $(date +%s) - RESERVE))
if ((left > 90)); then
  TAIL_LINES=8 step torch_compile 240 python3 "$PEER" compile --weights "$W" --precisions bf16 \
    --batches 256,32,1 --iters "$ITERS" --warmup 5 --json "$LOGS/torch_compile.jsonl"
else
  say "[torch_compile] SKIPPED: ${left}s left (needs > 90s)"
  echo '{"step":"torch_compile","rc":null,"skipped":true,"seconds":0}' >> "$STEPS"
fi

# ---- 9. report ----
report
save_logs
rm -rf "$WORK"/*.lwts 2>/dev/null
say "done in $(( $(date +%s) - START ))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
echo
cat "$OUT/table.md" 2>/dev/null || echo "(no table.md)"
