#!/usr/bin/env bash
# GPU suite (issue 15): at most ~5 minutes on one NVIDIA GPU, from the repository root after
# `pip install -e .`, with no network.  It builds its own full-size surrogates (BiomedCLIP,
# SAM ViT-B: real architectures, random weights, real on-disk layouts) in a scratch folder and prints
#   1. `medkt segment` slices/s on a synthetic 512x512 CT (64 slices, bf16, batched), per-stage
#      s/slice, peak RSS, FLOPs per slice and achieved FLOP/s vs a measured bf16 matmul peak
#      (M2IB noise from per-image CPU generators, the default); then the same with the noise drawn
#      on the GPU (m2ib.noise=device), to show what the host-side noise costs;
#   2. ViT-B/32 inversion steps/s at batch 10 (one concept x 10 images, bf16), with its FLOP/s
#      against the same kind of in-run bf16 matmul peak;
#   3. the `fast` inversion preset (issue 18) against the paper's 5000 steps: time and FLOP ratios.
#
#   bash benchmarks/gpu_suite.sh                 # on the GPU machine
#   bash benchmarks/gpu_suite.sh --cpu-dry-run   # every step on the CPU at tiny sizes (checks the script)
#
# Exit status: 3 when CUDA is absent (and --cpu-dry-run not given), else the first failing step's.
# Scratch: $MEDKT_GPU_SUITE_SCRATCH or a temp dir (~1.3 GB), removed at the end unless KEEP=1.
set -euo pipefail

MODE=gpu
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) MODE=cpu ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_suite: unknown option '$arg' (use --cpu-dry-run or --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, even if another medkt is installed
PY=${PYTHON:-python}
if [ "$MODE" = gpu ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_suite: ERROR: CUDA is not available (torch.cuda.is_available() is False)." >&2
    echo "gpu_suite: this suite measures GPU throughput and needs an NVIDIA GPU with a CUDA build of torch." >&2
    echo "gpu_suite: to check the script itself on a CPU, run: bash benchmarks/gpu_suite.sh --cpu-dry-run" >&2
    exit 3
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  DEV=(--device cuda --amp bf16)
  SEG=(--slices 64 --m2ib-batch 32 --sam-batch 16 --threads 8)
  INV=(--width 768 --layers 12 --patch 32 --image-size 224 --embed-dim 512 --concepts 1 --images 10
       --steps 50 --rounds 2 --threads 8)
  FAST=(--width 768 --layers 12 --patch 32 --image-size 224 --embed-dim 512 --concepts 1 --images 10
        --steps 20 --rounds 1 --threads 8)
  T_SEG=130; T_SEG2=50; T_INV=60; T_FAST=50
else
  echo "gpu_suite: --cpu-dry-run: tiny sizes on the CPU; the numbers mean nothing, only that every step runs"
  DEV=(--device cpu)
  SEG=(--slices 1 --size 64 --steps 1 --samples 1 --m2ib-batch 1 --threads 1)
  INV=(--concepts 1 --images 2 --steps 2 --rounds 1 --threads 1)
  FAST=(--concepts 1 --images 2 --steps 2 --rounds 1 --threads 1)
  T_SEG=900; T_SEG2=900; T_INV=300; T_FAST=600
fi

SCRATCH=${MEDKT_GPU_SUITE_SCRATCH:-$(mktemp -d -t medkt-gpu-suite-XXXXXX)}
cleanup() { if [ "${KEEP:-0}" != 1 ]; then rm -rf "$SCRATCH"; fi; }
trap cleanup EXIT
"$PY" -c "import torch, medkt; print(f'torch {torch.__version__} (cuda {torch.version.cuda}), medkt {medkt.__version__}')"
echo "scratch: $SCRATCH; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
START=$SECONDS

echo "=== 1/4 segment: BiomedCLIP + SAM ViT-B surrogates, synthetic CT, M2IB noise from CPU generators ==="
timeout "$T_SEG" "$PY" benchmarks/bench_segment.py "${SEG[@]}" "${DEV[@]}" --skip-reference --flops \
  --scratch "$SCRATCH" | tee "$SCRATCH/segment.log"

echo "=== 2/4 segment again with m2ib.noise=device (no host-to-device noise; device-specific values) ==="
timeout "$T_SEG2" "$PY" benchmarks/bench_segment.py "${SEG[@]}" "${DEV[@]}" --skip-reference --noise device \
  --scratch "$SCRATCH" | tee "$SCRATCH/segment-device-noise.log"

echo "=== 3/4 inversion: ViT-B/32-sized CLIP, batch 10 (bench_inversion.py) ==="
timeout "$T_INV" "$PY" benchmarks/bench_inversion.py "${INV[@]}" "${DEV[@]}" --skip-reference \
  | tee "$SCRATCH/inversion.log"

echo "=== 4/4 inversion: the 'fast' preset against the paper's 5000 steps (bench_inversion.py --preset fast) ==="
timeout "$T_FAST" "$PY" benchmarks/bench_inversion.py --preset fast "${FAST[@]}" "${DEV[@]}" \
  | tee "$SCRATCH/inversion-fast.log"

echo "=== summary ($((SECONDS - START)) s) ==="
grep -h -E "^medkt: .*slices/s|^FLOPs per slice|^medkt: .*steps/s|^medkt: .*achieved" \
  "$SCRATCH/segment.log" "$SCRATCH/segment-device-noise.log" "$SCRATCH/inversion.log"
grep -h -i -E "ratio|fewer" "$SCRATCH/inversion-fast.log" || true
