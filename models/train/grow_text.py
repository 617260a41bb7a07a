"""Writes the model's weights with the text encoder of a run that grew the vocabulary, keeping its own
image encoder and mask decoder.

    python3 models/train/grow_text.py models/promptseg-builtin/weights.pt runs/builtin-all/snap/snapshot-100.pt -o OUT.pt

The grown run must have trained with --freeze-known-text from these weights: every token they knew
then embeds exactly as before (checked here), so every phrase of known words gives the image encoder
and mask decoder the same embedding, and their outputs stay bit for bit what they were. The new
tokens' rows are the grown run's, for the specialist exported from it (export.py --own-presence)
to read.
"""
import argparse

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", help="the model's weights (their image encoder and mask decoder are kept)")
    ap.add_argument("grown", help="a checkpoint of a run that grew the vocabulary with --freeze-known-text from those weights")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    base, grown = (torch.load(p, map_location="cpu") for p in (a.weights, a.grown))
    model = dict(base["model"])
    for k, old in base["model"].items():
        if not k.startswith("text."):
            continue
        new = grown["model"][k]
        known = new[: old.shape[0]] if k == "text.tok.weight" else new
        if known.shape != old.shape or not torch.equal(known.float(), old.float()):
            raise SystemExit(f"{a.grown}: {k} differs from {a.weights} for the tokens it knew; train it with --freeze-known-text --init {a.weights}")
        model[k] = new.float()
    out = dict(model=model, step=base["step"], vocab_size=grown["vocab_size"], arch=base.get("arch", {}))
    torch.save(out, a.out)
    print(f"{a.out}: {a.weights}'s image encoder and mask decoder, text encoder of {a.grown} ({base['vocab_size']} -> {grown['vocab_size']} tokens)")


if __name__ == "__main__":
    main()
