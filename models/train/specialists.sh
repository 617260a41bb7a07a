#!/usr/bin/env bash
# Trains the built-in model's specialists on this CPU: for each, the shipped image encoder and mask
# decoder fine-tuned on one dataset's train cases (every other dataset sampled 0 times; the text
# encoder frozen, so the specialist reads the shipped text embeddings), then exported beside the
# model's own graphs. Usage: bash models/train/specialists.sh [NAME ...]  (default: em, the one
# shipped; left-atrium and polyp were tried in the ninth session and did not beat the generalist on
# val at half their run: models/README.md)
# Each run checkpoints to $STATE/<name>/last.pt every 100 steps and resumes from it when started
# again; progress (loss terms, images/s, ETA) goes to $STATE/<name>/train.log. Export afterwards:
#   python3 models/train/export.py --ckpt $STATE/em/snapshot-100.pt --specialist em --structures cell_membranes
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
STATE=${STATE:-models/promptseg-builtin/train-state-specialists}
ALL="acdc_cardiac_mri chaos_ct_liver_mini covid19_ct_infection_medseg ct_pulmonary_embolism_fumpe dc1000_dental_caries_xray drive_fundus endotect2020_polyp_endoscopy hc18_fetal_head_us isbi2012_em jsrt_scr_cxr la2018_left_atrium_lge_mri lgg_flair_mri monuseg_nuclei_histology ph2_dermoscopy"
# name  dataset  structures  steps
SPECS="em isbi2012_em cell_membranes 1500
left-atrium la2018_left_atrium_lge_mri left_atrium 1200
polyp endotect2020_polyp_endoscopy polyp 1000"
want=" ${*:-em} "
while read -r name ds structures steps; do
  [[ "$want" == *" $name "* ]] || continue
  boost=$(for d in $ALL; do [ "$d" = "$ds" ] || printf "%s=0," "$d"; done | sed 's/,$//')
  dir="$STATE/$name"
  mkdir -p "$dir"
  echo "== $name: $ds, $steps steps of 8 ($(date -u +%H:%M))"
  $PY models/train/train.py --batch 8 --steps "$steps" --lr 1e-3 --zoom 0.35 --upscale 1 \
    --init models/promptseg-builtin/weights.pt --train-only image.,decoder. --boost "$boost" \
    --val-every 0 --log-every 100 --state-dir "$dir" --model-dir "$dir" --snapshot-dir "$dir" --snapshots 0.5,1 \
    >> "$dir/train.log" 2>&1
  echo "$name" "$structures" > "$dir/structures"
done <<< "$SPECS"
