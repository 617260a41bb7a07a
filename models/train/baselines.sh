#!/usr/bin/env bash
# Trains and exports the task-specific baselines (models/train/task_baselines.py: one U-Net per
# dataset of ../shared/data/medseg2d, trained on its train split alone, checkpoint chosen on val)
# for every dataset of index.json, into $BASELINES_OUT/<dataset>/ (default runs/baselines, git-ignored):
# model.onnx + meta.json (what the TypeScript evaluator reads), best.pt, last.pt, train.log.
#
#   bash models/train/baselines.sh                 # every dataset, the recipe's defaults
#   bash models/train/baselines.sh --steps 1500    # extra options go to task_baselines.py
#   bash models/train/baselines.sh --bf16          # forward pass under bfloat16 autocast (a CPU with AMX, or a GPU)
#
# Resumable: a dataset whose model.onnx exists is skipped; an unfinished one resumes from its
# last.pt (written every 100 steps with the optimiser and RNG state), so run it again after a stop.
# Device: cuda when this Python's torch sees a GPU (a GPU machine), else the CPU under nice -n 10.
# PYTHON (default /usr/bin/python3), THREADS (torch CPU threads, default 2) and DATA (a medseg2d
# folder, default ../shared/data/medseg2d) can be set. The data is read in place; a machine without
# it cannot run this (the device tool carries at most 64 MiB; medseg2d is 272 MB, and the arrays
# cached in models/.cache/task-<dataset>.npz are larger still).
#
# Time on this project's 2-core CPU (--threads 2, nothing else running): 1.1-1.2 s per step of 8
# images, so the recipe's 3,000 steps take about an hour per dataset (jsrt_scr_cxr: 58 minutes,
# validations included); about 21 hours for all 21
# datasets. With --bf16 on this CPU (it has AMX) one step of the network alone (batch 8, forward,
# backward, AdamW) takes 0.75 s against 1.27 s in float32 (1.7x; measured with nothing else running),
# and a whole training step with its augmentation 0.85 s against 1.1-1.2 s: about 45 minutes a dataset.
# On a GPU (not measured here) the network is small (2.0 M parameters, about 7 GFLOP per
# 256 px image forward) and the batch-side CPU work is about 2 ms of cropping per step, so a step
# should take some tens of milliseconds: a few minutes per dataset.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda; NICE=()
else
  DEVICE=cpu; NICE=(nice -n 10)
fi
DATA_ARGS=()
if [ -n "${DATA:-}" ]; then DATA_ARGS=(--data "$DATA"); fi
echo "task baselines on $DEVICE into ${BASELINES_OUT:-runs/baselines}"
exec "${NICE[@]}" "$PY" models/train/task_baselines.py --all --out "${BASELINES_OUT:-runs/baselines}" \
  --device "$DEVICE" --threads "${THREADS:-2}" "${DATA_ARGS[@]}" "$@"
