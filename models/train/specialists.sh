#!/usr/bin/env bash
# Trains the built-in model's specialists on this CPU: for each, the image encoder and mask decoder
# of the network that answers for its structures (the generalist's weights.pt, or the all-datasets
# network rebuilt from its graphs) fine-tuned on one dataset's train cases (every other dataset
# sampled 0 times; the text encoder frozen, so the specialist reads the shipped text embeddings),
# then exported beside the model's own graphs. Usage: bash models/train/specialists.sh [NAME ...]
# (default: em, polyp, left-atrium and foot-ulcer, the four shipped; jsrt, for the heart and
# clavicles, optic-nerve-head, for the optic disc and cup, nerve-block, for the nerve and vessels,
# and lumbar-spine, for the vertebral bodies (the lumbar spine MRI U-Net gains more on val), were
# tried and not shipped: their val figures are in the model card's "What was tried")
#
# A specialist of width 2 starts from the shipped weights with the image encoder widened
# (widen.py: same outputs, twice the channels). A run is one or more stages of cosine-scheduled
# steps at lr 1e-3 (unless its options say otherwise), each starting from the previous stage's last
# weights (warm restarts), with the options of its line on top of the usual augmentation: em is
# 700 + 1,600 + 1,600 steps at width 2 with elastic deformations and axis swaps; polyp 1,000 steps
# at lr 5e-4 with colour, elastic and axis-swap augmentation; left-atrium 1,200 steps at lr 5e-4
# with elastic deformations; lumbar-spine 800 steps at lr 5e-4 with elastic deformations and
# foot-ulcer the same with colour augmentation and axis swaps, both from the all-datasets network.
# `ship` names the snapshot that was shipped (polyp and left-atrium: the one at half the run, which
# scored higher on val than the last). Durations and val figures of each: models/README.md
# (Specialists) and the model card (Training recipe, step 4).
# TRAIN_ARGS adds options to every stage's train.py (after the spec's own, so it can override them).
# Each stage checkpoints to $STATE/<name>/stage-<k>/last.pt every 100 steps and resumes from it when
# started again; a finished stage (snapshot-100.pt present) is skipped. Progress (loss terms,
# images/s, ETA) goes to that folder's train.log. At the end it prints the export command.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
STATE=${STATE:-models/promptseg-builtin/train-state-specialists}
source models/train/only_boost.sh
# name  dataset  structures  network it starts from (model: the shipped weights.pt; a specialist's
# name: that specialist rebuilt from its ONNX graphs by from_onnx.py, trained with its BatchNorm
# statistics kept)  width  steps of each stage  snapshot of the last stage to ship (percent of its
# run)  extra train.py options (- for none)
SPECS="em isbi2012_em cell_membranes model 2 700,1600,1600 100 --elastic=0.7,--transpose=0.5
left-atrium la2018_left_atrium_lge_mri left_atrium model 1 1200 050 --lr=5e-4,--elastic=0.5
polyp endotect2020_polyp_endoscopy polyp model 1 1000 050 --lr=5e-4,--colour=0.8,--elastic=0.5,--transpose=0.5
jsrt jsrt_scr_cxr heart,left_clavicle,right_clavicle model 1 600 050 --lr=5e-4,--elastic=0.5
optic-nerve-head drishti_gs1_optic_disc_cup optic_disc,optic_cup all-datasets 1 800 100 --lr=5e-4,--colour=0.8,--elastic=0.5
lumbar-spine lumbar_vb_mri_chu vertebral_body all-datasets 1 800 100 --lr=5e-4,--elastic=0.5
foot-ulcer fuseg_foot_ulcer foot_ulcer all-datasets 1 800 100 --lr=5e-4,--colour=0.8,--elastic=0.5,--transpose=0.5
nerve-block usgra_nerve_vessel_us nerve,blood_vessel all-datasets 1 800 100 --lr=5e-4,--elastic=0.5"
want=" ${*:-em polyp left-atrium foot-ulcer} "
while read -r name ds structures from width stages ship extra; do
  [[ "$want" == *" $name "* ]] || continue
  boost=$(only_boost "$ds")
  extra_args=()
  [ "$extra" = - ] || IFS=, read -r -a extra_args <<< "$extra"
  dir="$STATE/$name"
  mkdir -p "$dir"
  init=models/promptseg-builtin/weights.pt
  arch=()
  if [ "$from" != model ]; then
    [ -f "$dir/from-$from.pt" ] || $PY models/train/from_onnx.py --specialist "$from" -o "$dir/from-$from.pt"
    init="$dir/from-$from.pt"
    arch=(--bn-frozen)
  fi
  if [ "$width" != 1 ]; then
    [ "$from" = model ] || { echo "$name: a widened specialist starts from the shipped weights.pt" >&2; exit 1; }
    [ "$width" = 2 ] || { echo "widen.py doubles the encoder: width $width is not supported" >&2; exit 1; }
    [ -f "$dir/wide-init.pt" ] || $PY models/train/widen.py "$init" -o "$dir/wide-init.pt"
    init="$dir/wide-init.pt"
    arch=(--width 2 --full-width 32)
  fi
  k=0
  for steps in ${stages//,/ }; do
    k=$((k + 1))
    sd="$dir/stage-$k"
    mkdir -p "$sd"
    if [ ! -f "$sd/snapshot-100.pt" ]; then
      echo "== $name stage $k: $ds, $steps steps of 8 from $init ($(date -u +%H:%M))"
      $PY models/train/train.py --batch 8 --steps "$steps" --lr 1e-3 --zoom 0.35 --upscale 1 "${arch[@]}" \
        --init "$init" --train-only image.,decoder. --boost "$boost" \
        --val-every 0 --log-every 100 --state-dir "$sd" --model-dir "$sd" --snapshot-dir "$sd" --snapshots 0.5,1 ${extra_args[@]+"${extra_args[@]}"} ${TRAIN_ARGS:-} \
        >> "$sd/train.log" 2>&1
    fi
    init="$sd/snapshot-100.pt"
  done
  from_arg=()
  [ "$from" = model ] || from_arg=(--init-from "'the $from specialist (from_onnx.py)'")
  echo "== $name done; export it with: $PY models/train/export.py --ckpt $sd/snapshot-$ship.pt --specialist $name --structures $structures ${from_arg[*]+${from_arg[*]}}"
done <<< "$SPECS"
