"""Where a dataset's labels sit against its images, and what a sub-pixel misplacement costs a model.

Thin structures (cell membranes, vessels) lose Dice fast when a mask is off by a fraction of a
pixel, so a label convention that places them consistently off the image's own evidence matters.
Two measures, on one dataset and split:

  python3 models/train/label_offset.py --dataset isbi2012_em --split train
      per case: the label's offset from the image, as the vertex of a parabola through the
      correlation of the image's intensity with the label moved by -1, 0 and +1 px along each axis
      (the label is moved, the image stays). A positive dy means the labels sit above the image
      structure they trace (moving them down correlates better); dx > 0: they sit to its left.
      Meaningful for thin structures whose labels trace lines of the image (membranes, vessels);
      a filled region correlates broadly and its vertex says nothing.
  python3 models/train/label_offset.py --dataset isbi2012_em --split val --ckpt S.pt [S2.pt ...]
      per checkpoint: mean Dice on the split's present cases (tiled at native scale as the validator
      does, or letterboxed at the input size) with the logits moved by sub-pixel amounts (bilinear),
      and the predicted and true foreground shares. dy < 0 moves the prediction up.

Diagnostics only: nothing is written, and the service does not move its masks.
"""
import argparse, json, os, sys

import numpy as np
import torch
from scipy.ndimage import shift as subpixel_shift

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import load_all  # noqa: E402
from net import from_checkpoint  # noqa: E402
from tokenizer import WordPiece  # noqa: E402
from train import ROOT, training_texts  # noqa: E402
import evaluate as ev  # noqa: E402

SHIFTS_Y = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5)
SHIFTS_X = (-0.5, -0.25, 0.0, 0.25, 0.5)


def vertex(f_minus, f_zero, f_plus):
    """Abscissa of the parabola's extremum through (-1, f_minus), (0, f_zero), (1, f_plus)."""
    a = (f_plus + f_minus - 2 * f_zero) / 2
    return float("nan") if a == 0 else -(f_plus - f_minus) / 2 / (2 * a)


def label_offsets(img, gt):
    """img [H,W,3] uint8, gt [H,W] bool -> (dy, dx, r): the label's offset from the image in pixels and
    the correlation at no offset. The correlation's sign is taken from the unmoved label (membranes
    are dark: negative), so the vertex is that of its magnitude."""
    grey = img.astype(np.float64).mean(2)
    lab = gt.astype(np.float64)
    inner = (slice(2, -2), slice(2, -2))  # away from the wrapped border np.roll leaves

    def corr(dy, dx):
        moved = np.roll(np.roll(lab, dy, 0), dx, 1)
        return float(np.corrcoef(grey[inner].ravel(), moved[inner].ravel())[0, 1])

    r0 = corr(0, 0)
    s = -1.0 if r0 < 0 else 1.0
    dy = vertex(s * corr(-1, 0), s * r0, s * corr(1, 0))
    dx = vertex(s * corr(0, -1), s * r0, s * corr(0, 1))
    return dy, dx, r0


def shifted_dice(model, d, tok, vocab, split, slug):
    by_slug = {s["slug"]: s for s in vocab["structures"]}
    j = d.slugs.index(slug)
    e = ev.encode_text(model, tok, [by_slug[slug]["name"]])
    dice, shares = {}, []
    with torch.no_grad():
        for i in d.split_idx(split):
            lg, _, masks = ev.case_logits(model, d, i, e)
            lg, gt = lg[0].numpy(), masks[j]
            if not gt.any():
                continue
            shares.append(((lg > 0).mean(), gt.mean()))
            for dy in SHIFTS_Y:
                for dx in SHIFTS_X:
                    moved = subpixel_shift(lg, (dy, dx), order=1, mode="nearest")
                    dice.setdefault((dy, dx), []).append(ev.dice(moved > 0, gt))
    return {k: float(np.mean(v)) for k, v in dice.items()}, np.mean(shares, 0), len(shares)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--structure", default=None, help="structure slug (default: the dataset's first)")
    ap.add_argument("--split", choices=["train", "val"], default="train", help="never test: this informs choices")
    ap.add_argument("--ckpt", nargs="*", default=[], help="checkpoints whose Dice under sub-pixel moves to measure")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", ".cache"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    vocab = json.load(open(os.path.join(ROOT, "prompts", "vocabulary.json")))
    known = [x["id"] for x in vocab["datasets"]]
    if a.dataset not in known:
        raise SystemExit(f"--dataset: no dataset {a.dataset} (known: {', '.join(known)})")
    d = [x for x in load_all(a.data, vocab, a.cache) if x.id == a.dataset][0]
    slug = a.structure or d.slugs[0]
    if slug not in d.slugs:
        raise SystemExit(f"--structure: {a.dataset} has no {slug} (it has: {', '.join(d.slugs)})")
    j = d.slugs.index(slug)
    if not a.ckpt:
        rows = []
        for i in d.split_idx(a.split):
            img, masks = d.native[i] if d.tiled else (d.images[i], d.masks[i])
            if masks[j].any():
                dy, dx, r0 = label_offsets(img, masks[j])
                rows.append((dy, dx))
                print(f"{d.cases[i]}: label offset dy {dy:+.2f} px, dx {dx:+.2f} px (correlation {r0:+.3f})")
        m, sd = np.nanmean(rows, 0), np.nanstd(rows, 0)
        print(f"{a.dataset}/{slug} {a.split}, {len(rows)} cases: dy {m[0]:+.2f} (sd {sd[0]:.2f}), dx {m[1]:+.2f} (sd {sd[1]:.2f}) px"
              f"{'' if d.tiled else ' at the letterboxed input size'}")
        return
    tok = WordPiece.build(training_texts(vocab))
    for path in a.ckpt:
        model = from_checkpoint(torch.load(path, map_location="cpu"))
        model.eval()
        dice, share, n = shifted_dice(model, d, tok, vocab, a.split, slug)
        best = max(dice, key=dice.get)
        print(f"{path}: {a.dataset}/{slug} {a.split}, {n} present cases; foreground share predicted {share[0]:.4f}, true {share[1]:.4f}")
        print("  dy \\ dx " + " ".join(f"{dx:+7.2f}" for dx in SHIFTS_X))
        for dy in SHIFTS_Y:
            print(f"  {dy:+7.2f} " + " ".join(f"{dice[(dy, dx)]:7.4f}" for dx in SHIFTS_X))
        print(f"  unmoved {dice[(0.0, 0.0)]:.4f}; best {dice[best]:.4f} moved dy {best[0]:+.2f}, dx {best[1]:+.2f}", flush=True)


if __name__ == "__main__":
    main()
