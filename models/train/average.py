"""Averages the weights of checkpoints of one run (snapshots late in a cosine schedule) into one
checkpoint: a cheap ensemble that costs nothing at inference.

    python3 models/train/average.py OUT/snapshot-085.pt OUT/snapshot-100.pt -o OUT/average.pt
    python3 models/train/validate.py OUT/average.pt        # then choose on val, as for any snapshot

Floating-point tensors (weights and BatchNorm running statistics) are averaged; integer ones (the
BatchNorm batch counters) are taken from the last checkpoint. The checkpoints must share the
architecture and vocabulary; anything else is refused with the name of what differs. One
exception: a grown vocabulary trained with the known tokens frozen (train.py --freeze-known-text)
averages with the weights it started from, whose token rows it holds unchanged; the new tokens'
rows come from the checkpoints that have them. `--weights` gives each checkpoint its share:

    python3 models/train/average.py models/promptseg-builtin/weights.pt runs/all/snap/snapshot-100.pt \
        --weights 0.5,0.5 -o runs/all/soup.pt

A specialist's text encoder is frozen, but snapshots stored in float16 (a GPU run's
--snapshot-half) round it, and export.py --specialist refuses text weights that differ from the
shipped ones. `--frozen-from models/promptseg-builtin/weights.pt` takes the text encoder's tensors
exactly from that file, after checking that the average differs from them by no more than float16
rounding (a text encoder that was trained is refused):

    python3 models/train/average.py stage-3/snapshot-100.pt gpu/snapshot-100.pt -o soup.pt \
        --frozen-from models/promptseg-builtin/weights.pt
"""
import argparse, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import PromptSegNet  # noqa: E402


def arch_of(ck):
    """The checkpoint's architecture with defaults filled in (older checkpoints carry none)."""
    return PromptSegNet(1, **(ck.get("arch") or {})).arch


TOKENS = "text.tok.weight"


def grow_tokens(cks, paths):
    """Gives every checkpoint the largest vocabulary's token rows, where its own rows are the first
    rows of that one's unchanged (a vocabulary grown with its known tokens frozen); refuses otherwise."""
    big = max(range(len(cks)), key=lambda i: cks[i]["vocab_size"])
    rows = cks[big]["model"][TOKENS]
    for p, ck in zip(paths, cks):
        own = ck["model"][TOKENS]
        if own.shape[0] == rows.shape[0]:
            continue
        if own.shape[0] > rows.shape[0] or not torch.equal(own.float(), rows[: own.shape[0]].float()):
            raise SystemExit(f"{p}: vocabulary size {ck['vocab_size']} differs from {paths[big]}'s {cks[big]['vocab_size']}, "
                             "and its token rows are not the first rows of that one's (train the grown one with --freeze-known-text)")
        ck["model"][TOKENS] = torch.cat([own, rows[own.shape[0]:].to(own.dtype)])
        ck["vocab_size"] = cks[big]["vocab_size"]


def average(paths, weights=None):
    cks = [torch.load(p, map_location="cpu") for p in paths]
    weights = weights or [1.0 / len(cks)] * len(cks)
    if len(weights) != len(cks) or abs(sum(weights) - 1) > 1e-6:
        raise SystemExit(f"--weights: give one share per checkpoint ({len(cks)}), summing to 1")
    if len({ck["vocab_size"] for ck in cks}) > 1:
        grow_tokens(cks, paths)
    first = cks[0]
    for p, ck in zip(paths[1:], cks[1:]):
        if arch_of(ck) != arch_of(first):
            raise SystemExit(f"{p}: architecture {arch_of(ck)} differs from {paths[0]}'s {arch_of(first)}")
        if ck["model"].keys() != first["model"].keys():
            diff = sorted(set(ck["model"]) ^ set(first["model"]))
            raise SystemExit(f"{p}: weights differ in name from {paths[0]}'s: {diff[:5]}")
    out = {}
    for k, v in cks[-1]["model"].items():
        if v.is_floating_point():
            out[k] = sum(w * ck["model"][k].float() for w, ck in zip(weights, cks))
        else:
            out[k] = v.clone()
    return dict(model=out, step=cks[-1].get("step"), vocab_size=first["vocab_size"], arch=arch_of(first),
                averaged=[os.path.relpath(p) for p in paths], shares=weights)


def take_frozen(avg, path, prefix="text."):
    """Replaces avg's `prefix` tensors by path's, which they may differ from by float16 rounding only."""
    src = torch.load(path, map_location="cpu")["model"]
    for k, v in avg["model"].items():
        if not k.startswith(prefix) or not v.is_floating_point():
            continue
        if k not in src or src[k].shape != v.shape:
            raise SystemExit(f"--frozen-from {path}: no tensor {k} of shape {tuple(v.shape)}")
        ref = src[k].float()
        if not torch.allclose(v, ref, rtol=2e-3, atol=1e-4):
            raise SystemExit(f"--frozen-from {path}: {k} differs by more than float16 rounding "
                             f"(largest {float((v - ref).abs().max()):.3g}): that part was trained, not frozen")
        avg["model"][k] = src[k].clone()
    avg["frozen_from"] = os.path.relpath(path)
    return avg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--weights", default="", help="comma-separated shares, one per checkpoint, summing to 1 (default: equal)")
    ap.add_argument("--frozen-from", default=None, help="take the text encoder's tensors exactly from this checkpoint (the shipped weights.pt), for a specialist")
    a = ap.parse_args()
    if len(a.ckpts) < 2:
        raise SystemExit("give at least two checkpoints to average")
    for p in a.ckpts + ([a.frozen_from] if a.frozen_from else []):
        if not os.path.isfile(p):
            raise SystemExit(f"{p}: no such checkpoint")
    avg = average(a.ckpts, [float(w) for w in a.weights.split(",")] if a.weights else None)
    if a.frozen_from:
        avg = take_frozen(avg, a.frozen_from)
    torch.save(avg, a.out)
    print(f"{a.out}: mean of {len(a.ckpts)} checkpoints", file=sys.stderr)


if __name__ == "__main__":
    main()
