"""Where a structure's Dice is lost: error pixels by their distance from the other mask, and Dice by
the structure's size.

Reads the masks that `promptseg segment --out DIR` wrote (`DIR/<case>__<structure>.png`) and the
dataset's labels in place. Two steps, on one dataset and split:

  python3 models/train/error_anatomy.py --dataset isbi2012_em --split val --list > /tmp/cases
  node dist/main/cli.js segment $(cat /tmp/cases) --prompt "cell membranes" --out /tmp/pred
  python3 models/train/error_anatomy.py --dataset isbi2012_em --split val --pred /tmp/pred

It prints, pooled over the split's cases where the structure is present:
  - false-positive pixels by their distance to the nearest labelled pixel, and false negatives by
    their distance to the nearest predicted one, in rings 1, 2 and 3 px away and farther: the
    first bins are boundary disagreements (a mask drawn a pixel wider, narrower or beside the
    label), the last one structures drawn where none is labelled or labelled ones missed;
  - the pooled Dice, and what it would be if the errors within 1, 2 or 3 px were forgiven;
  - per case Dice against the labelled area: the mean by quartile of area, and the worst cases.

Diagnostics only; nothing is written. The structure defaults to the dataset's only one.
"""
import argparse, json, os, sys

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import ROOT  # noqa: E402

# an error pixel is at least 1 px from the other mask; the rings are 1 px (touching it, diagonals
# included), 2 px and 3 px away, then farther
BINS = (0.0, 1.5, 2.5, 3.5, np.inf)


def load_mask(path):
    return np.asarray(Image.open(path).convert("L")) > 127


def case_errors(gt, pred):
    """Counts of false positives and false negatives per distance bin, and the case's Dice."""
    fp, fn = pred & ~gt, gt & ~pred
    # distance of each pixel to the nearest pixel of the other mask (inf when that mask is empty)
    to_gt = distance_transform_edt(~gt) if gt.any() else np.full(gt.shape, np.inf)
    to_pred = distance_transform_edt(~pred) if pred.any() else np.full(gt.shape, np.inf)
    fp_bins = np.histogram(to_gt[fp], BINS)[0]
    fn_bins = np.histogram(to_pred[fn], BINS)[0]
    total = gt.sum() + pred.sum()
    dice = 2 * (gt & pred).sum() / total if total else 1.0
    return fp_bins, fn_bins, float(dice)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--structure", help="the structure's slug (default: the dataset's only one)")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--pred", help="the folder `promptseg segment --out` wrote")
    ap.add_argument("--list", action="store_true", help="print the image paths of the split's cases and stop")
    ap.add_argument("--worst", type=int, default=10, help="how many of the worst cases to print")
    a = ap.parse_args()

    ds_dir = os.path.join(a.data, a.dataset)
    if not os.path.isdir(ds_dir):
        sys.exit(f"no dataset {a.dataset!r} under {os.path.abspath(a.data)}")
    meta = json.load(open(os.path.join(ds_dir, "dataset.json")))
    slugs = [s["slug"] for s in meta["structures"]]
    slug = a.structure or (slugs[0] if len(slugs) == 1 else None)
    if slug not in slugs:
        sys.exit(f"--structure must be one of {', '.join(slugs)}")
    cases = json.load(open(os.path.join(ds_dir, "splits.json")))[a.split]
    images = {os.path.splitext(f)[0]: f for f in os.listdir(os.path.join(ds_dir, "images"))}
    cases = [c for c in cases if c in images]
    if a.list:
        print("\n".join(os.path.join(ds_dir, "images", images[c]) for c in cases))
        return
    if not a.pred:
        sys.exit("give --pred DIR (the masks of `promptseg segment --out DIR`) or --list")

    fp_tot, fn_tot = np.zeros(4, np.int64), np.zeros(4, np.int64)
    gt_tot = pred_tot = 0
    rows = []
    for c in cases:
        gt_path = os.path.join(ds_dir, "masks", slug, c + ".png")
        if not os.path.exists(gt_path):
            continue
        gt = load_mask(gt_path)
        if not gt.any():
            continue  # Dice is reported on cases where the structure is present
        pred_path = os.path.join(a.pred, f"{c}__{slug}.png")
        if not os.path.exists(pred_path):
            sys.exit(f"no predicted mask {pred_path}: run `promptseg segment` on the --list output first")
        pred = load_mask(pred_path)
        if pred.shape != gt.shape:
            sys.exit(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]}, its label {gt.shape[1]}x{gt.shape[0]}")
        fp_bins, fn_bins, dice = case_errors(gt, pred)
        fp_tot += fp_bins
        fn_tot += fn_bins
        gt_tot += int(gt.sum())
        pred_tot += int(pred.sum())
        rows.append((dice, int(gt.sum()), int(pred.sum()), c))
    if not rows:
        sys.exit(f"no {a.split} case of {a.dataset} has {slug} present")

    err = fp_tot + fn_tot
    print(f"{a.dataset} / {slug}, {a.split}: {len(rows)} cases, labelled {gt_tot} px, predicted {pred_tot} px")
    print(f"mean Dice per case {np.mean([r[0] for r in rows]):.4f}; pooled Dice {1 - err.sum() / (gt_tot + pred_tot):.4f}")
    names = ("1 px", "2 px", "3 px", "farther")
    print("error pixels by distance from the other mask (share of all errors, Dice points they cost):")
    for i, n in enumerate(names):
        print(f"  {n:>7}: FP {fp_tot[i]:>8}  FN {fn_tot[i]:>8}  {err[i] / err.sum():6.1%}  {100 * err[i] / (gt_tot + pred_tot):5.2f}")
    for k in (1, 2, 3):
        print(f"pooled Dice with errors within {k} px forgiven: {1 - err[k:].sum() / (gt_tot + pred_tot):.4f}")
    areas = np.array([r[1] for r in rows])
    dices = np.array([r[0] for r in rows])
    edges = np.quantile(areas, [0, 0.25, 0.5, 0.75, 1])
    print("mean Dice by quartile of labelled area:")
    for q in range(4):
        sel = (areas >= edges[q]) & ((areas <= edges[q + 1]) if q == 3 else (areas < edges[q + 1]))
        print(f"  {int(edges[q]):>7}-{int(edges[q + 1]):<7} px: {dices[sel].mean():.4f} ({sel.sum()} cases)")
    print(f"cases under 0.5 Dice: {(dices < 0.5).sum()}; the worst {min(a.worst, len(rows))} (Dice, labelled px, predicted px, case):")
    for d, g, p, c in sorted(rows)[: a.worst]:
        print(f"  {d:.3f} {g:>7} {p:>7}  {c}")


if __name__ == "__main__":
    main()
