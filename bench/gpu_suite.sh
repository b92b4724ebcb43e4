#!/usr/bin/env bash
# Every GPU check and benchmark of the harness, in one run of at most 8 minutes on one H100/H200.
#
#   bash bench/gpu_suite.sh OUTDIR              # on the GPU box, from a copy of the repository
#   bash bench/gpu_suite.sh --cpu-check [OUTDIR]  # every stage at a tiny size on a CPU (<= 3 min)
#   PYTHON=/path/to/python bash bench/gpu_suite.sh OUTDIR   # another interpreter (default: python, python3)
#
# Needs only torch and torchvision (no Ray, no Fashion-MNIST; the project need not be
# installed: it runs from the repository root with PYTHONPATH=.). Stages, each with its own
# time limit (and all within the total), each printing its rows as they come and appending
# them to OUTDIR/gpu.json (one JSON object a line) and OUTDIR/gpu.md:
#   versions  GPU, driver, torch, CUDA, cuDNN, triton; gcc and Python.h (for torch.compile)
#   trials    smoke trials on CUDA through `python -m harness train`: mixup; efficient with
#             --compile-mode reduce-overhead; distillation from a teacher checkpoint; the step
#             under torch.cuda.set_sync_debug_mode("warn") (bench/sync_check.py: no sync);
#             4 miniature `local` trials sharing the GPU (bench/fractional.py)
#   decode    GPU JPEG decode while a long kernel is queued (bench/decode_check.py)
#   steps     compile off: trainer vs plain AMP + channels_last loops (bench/step_bench.py)
#   data      JPEG files via workers / GPU decode vs in-memory vs plain torchvision (bench/data_bench.py)
#   compile   compile on, last: it gets what time is left and may be cut
# The last thing printed is one short table: card, figure, images/s, ratio.
# Exit status: 0 when every check passed, 1 otherwise (every stage runs either way).
set -u
cd "$(dirname "$0")/.." || exit 2

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
CPU_CHECK=0
OUT=""
for arg in "$@"; do
  case "$arg" in
    --cpu-check) CPU_CHECK=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
if [ -z "$OUT" ]; then
  if [ "$CPU_CHECK" = 1 ]; then OUT="$(mktemp -d)"; else usage >&2; exit 2; fi
fi
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
for f in gpu.json gpu.md; do [ -f "$OUT/$f" ] && mv "$OUT/$f" "$OUT/$f.prev"; done
: > "$OUT/gpu.json"
echo "# GPU suite $(date -u +%Y-%m-%dT%H:%M:%SZ) $( [ "$CPU_CHECK" = 1 ] && echo '(--cpu-check)')" > "$OUT/gpu.md"

PY="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HARNESS_COMPILE_CACHE="${HARNESS_COMPILE_CACHE:-$OUT/inductor}"
export PYTHONUNBUFFERED=1
FLAGS=()
if [ "$CPU_CHECK" = 1 ]; then
  FLAGS=(--cpu-check)
  export CUDA_VISIBLE_DEVICES=""
  # aim: <= 180 s on an idle 2-core machine; the limits leave room for a busy one (they only
  # catch a hang: on a CPU nothing is timed for its own sake)
  TOTAL=600
  LIMITS=(versions:60 trials:240 decode:60 steps:120 data:120 compile:0)
else
  TOTAL=480
  LIMITS=(versions:30 trials:120 decode:60 steps:120 data:150 compile:0)
fi
RESERVE=8  # seconds kept for the summary
FAILED=0
for entry in "${LIMITS[@]}"; do
  stage="${entry%%:*}"
  limit="${entry##*:}"
  left=$((TOTAL - SECONDS - RESERVE))
  if [ "$limit" = 0 ] || [ "$limit" -gt "$left" ]; then limit=$left; fi
  if [ "$limit" -lt 5 ]; then
    "$PY" bench/gpu_suite.py note "$stage" "skipped: the suite's ${TOTAL}s were spent" --out "$OUT"
    FAILED=1
    continue
  fi
  echo "== stage $stage (limit ${limit}s, ${SECONDS}s elapsed)"
  timeout -k 5 "$limit" "$PY" bench/gpu_suite.py stage "$stage" --out "$OUT" "${FLAGS[@]}"
  rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    "$PY" bench/gpu_suite.py note "$stage" "cut at its ${limit}s limit (rows printed so far are kept)" --out "$OUT"
    FAILED=1
  elif [ "$rc" != 0 ]; then
    FAILED=1
  fi
done
echo "== done in ${SECONDS}s; rows in $OUT/gpu.json and $OUT/gpu.md"
"$PY" bench/gpu_suite.py summary --out "$OUT" || FAILED=1
exit "$FAILED"
