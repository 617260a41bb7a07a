"""Averages the weights of checkpoints of one run (snapshots late in a cosine schedule) into one
checkpoint: a cheap ensemble that costs nothing at inference.

    python3 models/train/average.py OUT/snapshot-085.pt OUT/snapshot-100.pt -o OUT/average.pt
    python3 models/train/validate.py OUT/average.pt        # then choose on val, as for any snapshot

Floating-point tensors (weights and BatchNorm running statistics) are averaged; integer ones (the
BatchNorm batch counters) are taken from the last checkpoint. The checkpoints must share the
architecture and vocabulary; anything else is refused with the name of what differs.
"""
import argparse, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import PromptSegNet  # noqa: E402


def arch_of(ck):
    """The checkpoint's architecture with defaults filled in (older checkpoints carry none)."""
    return PromptSegNet(1, **(ck.get("arch") or {})).arch


def average(paths):
    cks = [torch.load(p, map_location="cpu") for p in paths]
    first = cks[0]
    for p, ck in zip(paths[1:], cks[1:]):
        if arch_of(ck) != arch_of(first):
            raise SystemExit(f"{p}: architecture {arch_of(ck)} differs from {paths[0]}'s {arch_of(first)}")
        if ck["vocab_size"] != first["vocab_size"]:
            raise SystemExit(f"{p}: vocabulary size {ck['vocab_size']} differs from {paths[0]}'s {first['vocab_size']}")
        if ck["model"].keys() != first["model"].keys():
            diff = sorted(set(ck["model"]) ^ set(first["model"]))
            raise SystemExit(f"{p}: weights differ in name from {paths[0]}'s: {diff[:5]}")
    out = {}
    for k, v in cks[-1]["model"].items():
        if v.is_floating_point():
            out[k] = sum(ck["model"][k].float() for ck in cks) / len(cks)
        else:
            out[k] = v.clone()
    return dict(model=out, step=cks[-1].get("step"), vocab_size=first["vocab_size"], arch=arch_of(first),
                averaged=[os.path.relpath(p) for p in paths])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    if len(a.ckpts) < 2:
        raise SystemExit("give at least two checkpoints to average")
    for p in a.ckpts:
        if not os.path.isfile(p):
            raise SystemExit(f"{p}: no such checkpoint")
    torch.save(average(a.ckpts), a.out)
    print(f"{a.out}: mean of {len(a.ckpts)} checkpoints", file=sys.stderr)


if __name__ == "__main__":
    main()
