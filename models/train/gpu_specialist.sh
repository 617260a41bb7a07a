#!/usr/bin/env bash
# One device-tool call that continues a width-2 specialist (specialists.sh) on a lent GPU: one
# dataset's train cases alone, image encoder + mask decoder trained, text encoder frozen, batch 64
# under bfloat16 autocast, for MINUTES of wall time (cosine schedule over that time), leaving
# half-precision snapshots at 0.5 / 0.75 / 1 of the run and the log in $OUT. Run here first:
#   /usr/bin/python3 models/train/pack.py      # models/.pack, 38 MiB, train cases only
#   /usr/bin/python3 models/train/half.py models/promptseg-builtin/train-state-specialists/em/stage-3/snapshot-100.pt -o models/.gpu-init/em.pt
# then, through the device tool, with carry ["models/.pack", "models/.gpu-init"]:
#   bash models/train/gpu_specialist.sh models/.gpu-init/em.pt isbi2012_em 3.3
# Back here: validate.py --datasets isbi2012_em on the snapshots; average.py ... --frozen-from
# models/promptseg-builtin/weights.pt (the float16 snapshots round the frozen text encoder, which
# export.py --specialist refuses); export.py --ckpt ... --specialist em --structures cell_membranes.
# On one H200: 3.3 minutes gave 1,775 steps of 64 (~555 images/s over the run;
# 222 s for the whole call). The device tool's 64 MiB: models/README.md (One H200 lease).
# PYTHON=/usr/bin/python3 DEVICE=cpu WORKERS=1 BATCH=2 OUT=/tmp/o bash models/train/gpu_specialist.sh ... 0.3 checks it on a CPU.
set -u
INIT=${1:?usage: gpu_specialist.sh INIT DATASET MINUTES [extra train.py arguments]}
DS=${2:?dataset}
MINUTES=${3:?minutes}
shift 3
OUT=${OUT:?the device tool sets OUT}
source "$(dirname "$0")/only_boost.sh"
BOOST=$(only_boost "$DS") || exit 1
rm -rf /tmp/spec-state /tmp/spec-model
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: ${DEVICE:-cuda}"; } | tee "$OUT/gpu.txt"
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" models/train/train.py --data models/.pack --device "${DEVICE:-cuda}" \
  --workers "${WORKERS:-14}" --batch "${BATCH:-64}" --lr 1e-3 --zoom 0.35 --upscale 1 --width 2 --full-width 32 \
  --init "$INIT" --train-only image.,decoder. --boost "$BOOST" ${AMP---amp} \
  --val-every 0 --log-every 200 --ckpt-every 1000000 --state-dir /tmp/spec-state --model-dir /tmp/spec-model \
  --minutes "$MINUTES" --steps 1000000 --snapshot-dir "$OUT" --snapshots 0.5,0.75,1 --snapshot-half "$@" > "$OUT/train.log" 2>&1
rc=$?
tail -5 "$OUT/train.log"
exit $rc
