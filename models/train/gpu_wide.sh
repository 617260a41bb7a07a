#!/usr/bin/env bash
# One device-tool call that trains the wider image encoder (width 2, full-resolution branch 32) on a
# lent GPU, starting from the shipped network widened without changing what it computes (widen.py),
# and leaves half-precision snapshots and the log in $OUT (each file under the tool's 16 MiB
# limit). Run here first:
#   /usr/bin/python3 models/train/pack.py          # models/.pack, 38 MiB, train cases only
# then, through the device tool (at most 600 s a command), with carry ["models/.pack"] and timeout_s 600:
#   bash models/train/gpu_wide.sh 7        # 7 minutes of training + ~1 of data loading and the autocast check
# Back here: /usr/bin/python3 models/train/validate.py <files_at>/snapshot-*.pt, then export.py.
# bfloat16 autocast (--amp) is tried for 20 steps first; if that fails the run trains in float32.
# On one H200: bfloat16 passed its check; 7 minutes gave 5,564 steps of 64 (~845
# images/s), 498 s for the whole call (model card, Training 11; not shipped).
# PYTHON=/usr/bin/python3 DEVICE=cpu WORKERS=1 BATCH=2 AMP_CHECK_STEPS=2 OUT=/tmp/o bash models/train/gpu_wide.sh 0.5 checks it on a CPU.
set -u
MINUTES=${1:?usage: gpu_wide.sh MINUTES [extra train.py arguments]}
shift
OUT=${OUT:?the device tool sets OUT}
BOOST=acdc_cardiac_mri=2,la2018_left_atrium_lge_mri=2.5,endotect2020_polyp_endoscopy=3,lgg_flair_mri=1.3,drive_fundus=2.5,isbi2012_em=2.5,monuseg_nuclei_histology=1.6,ph2_dermoscopy=1.6
rm -rf /tmp/wide-state /tmp/wide-model  # a run starts here, never resumes a leftover state
"${PYTHON:-python3}" models/train/widen.py models/promptseg-builtin/weights.pt -o /tmp/wide-init.pt > "$OUT/widen.log" 2>&1 || { cat "$OUT/widen.log"; exit 1; }
ARGS=(--data models/.pack --device "${DEVICE:-cuda}" --workers "${WORKERS:-14}" --batch "${BATCH:-64}" --lr 5e-4 --zoom 0.35 --upscale 1
      --width 2 --full-width 32 --init /tmp/wide-init.pt --boost "$BOOST"
      --val-every 0 --log-every 200 --ckpt-every 1000000 --state-dir /tmp/wide-state --model-dir /tmp/wide-model)
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: ${DEVICE:-cuda}"; } | tee "$OUT/gpu.txt"
AMP=--amp
if ! timeout 240 "${PYTHON:-python3}" models/train/train.py "${ARGS[@]}" --amp --bench "${AMP_CHECK_STEPS:-20}" > "$OUT/amp-check.log" 2>&1; then
  echo "bfloat16 autocast failed its 20-step check (amp-check.log); training in float32" | tee -a "$OUT/gpu.txt"
  AMP=
fi
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" models/train/train.py "${ARGS[@]}" $AMP --minutes "$MINUTES" --steps 1000000 \
  --snapshot-dir "$OUT" --snapshots 0.7,0.85,1 --snapshot-half "$@" > "$OUT/train.log" 2>&1
rc=$?
tail -5 "$OUT/train.log"
exit $rc
