#!/usr/bin/env bash
# One device-tool call that trains the generalist on every medseg2d dataset (36 structures,
# prompts/vocabulary.json) on a lent GPU, from the shipped weights (the generalist's image encoder
# and mask decoder, and the text encoder the all-datasets run grew, which already embeds the 36
# structures' words): the text encoder is frozen (train.py --freeze-known-text), so the shipped
# specialists stay valid and export.py --keep-specialists can keep them.
# Leaves snapshots, the run's tokenizer and the log in $OUT. Run here first:
#   /usr/bin/python3 models/train/pack.py --vocabulary prompts/vocabulary.json --out models/.pack-all
#   # 40.4 MiB, train cases only; with the 49 MB of tracked files that is over the tool's 64 MiB, so
#   # untrack for the call what it does not read (models/promptseg-builtin/*.onnx, models/tiny)
# then through the device tool (at most 600 s a command), with carry ["models/.pack-all"] and timeout_s 600:
#   bash models/train/gpu_all.sh 7        # 7 minutes of training + about 1 of data loading
# Back here: copy $OUT/tokenizer*.json beside the snapshots, then
#   /usr/bin/python3 models/train/validate.py --vocabulary prompts/vocabulary.json --tokenizer <files_at> <files_at>/snapshot-*.pt
# PYTHON=/usr/bin/python3 DEVICE=cpu WORKERS=1 BATCH=2 OUT=/tmp/o bash models/train/gpu_all.sh 0.2 checks it on a CPU.
set -u
MINUTES=${1:?usage: gpu_all.sh MINUTES [extra train.py arguments]}
shift
OUT=${OUT:?the device tool sets OUT}
BOOST=acdc_cardiac_mri=2,la2018_left_atrium_lge_mri=2.5,endotect2020_polyp_endoscopy=3,lgg_flair_mri=1.3,drive_fundus=2.5,isbi2012_em=2.5,monuseg_nuclei_histology=1.6,ph2_dermoscopy=1.6,drishti_gs1_optic_disc_cup=2.5,brats2015_deepmedic_t1c=2.5,brats2015_deepmedic_flair=2.5,gb_covid_cxr=2.5,lumbar_vb_mri_chu=2,fuseg_foot_ulcer=2,usgra_nerve_vessel_us=2.5
rm -rf /tmp/all-state /tmp/all-model  # a run starts here, never resumes a leftover state
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: ${DEVICE:-cuda}"; } | tee "$OUT/gpu.txt"
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" models/train/train.py --data models/.pack-all --vocabulary prompts/vocabulary.json \
  --device "${DEVICE:-cuda}" --workers "${WORKERS:-14}" --batch "${BATCH:-64}" --lr 5e-4 --zoom 0.35 --upscale 1 \
  --init models/promptseg-builtin/weights.pt --freeze-known-text --boost "$BOOST" \
  --val-every 0 --log-every 200 --ckpt-every 1000000 --state-dir /tmp/all-state --model-dir /tmp/all-model \
  --minutes "$MINUTES" --steps 1000000 --snapshot-dir "$OUT" --snapshots 0.7,0.85,1 "$@" > "$OUT/train.log" 2>&1
rc=$?
cp /tmp/all-model/tokenizer*.json "$OUT/" 2>/dev/null
tail -5 "$OUT/train.log"
exit $rc
