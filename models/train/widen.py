"""Widens a trained network's image encoder by 2 without changing what it computes (Net2Net-style
function-preserving widening), so a wider encoder starts from the trained model instead of from
scratch:

    python3 models/train/widen.py models/promptseg-builtin/weights.pt -o /tmp/wide-init.pt
    python3 models/train/train.py --init /tmp/wide-init.pt --width 2 --full-width 32 ...

Every image-encoder channel (each stage's, the full-resolution branch's hidden ones) is doubled:
the new channels c and c + C are copies of old channel c (a layer that makes channels has its
filters repeated; BatchNorm statistics and parameters repeated; depthwise filters repeated). A
layer that reads doubled channels splits each old input weight w between the two copies as
w * (1/2 + e) and w * (1/2 - e), with e drawn per channel: the sum, and so every output, is
unchanged, while the copies get different gradients and so grow apart in training (equal halves
would keep them identical forever). The text encoder and decoder are copied as they are; the
pooled embedding (used for out-of-distribution scores) doubles in length with the last stage,
so the model must be calibrated again after export, as after any training.

The check at the end runs both networks on random images and prints the largest difference of
every output (float32 rounding only, about 1e-5 of the outputs' scale).
"""
import argparse, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import PromptSegNet  # noqa: E402


def widened_state(narrow, wide, spread=0.2, seed=0):
    """The wide network's state dict filled from the narrow one's (see the module text)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    modules = dict(wide.named_modules())
    for k, w in wide.state_dict().items():
        v = narrow[k]
        if v.shape == w.shape:
            out[k] = v.clone()
            continue
        if not k.startswith("image."):
            raise SystemExit(f"{k}: shape {tuple(v.shape)} -> {tuple(w.shape)} outside the image encoder")
        for d, (a, b) in enumerate(zip(v.shape, w.shape)):
            if b not in (a, 2 * a):
                raise SystemExit(f"{k}: dimension {d} goes from {a} to {b}; only doubling is function-preserving here")
        t = v
        mod = modules[k.rsplit(".", 1)[0]]
        grouped = isinstance(mod, torch.nn.Conv2d) and mod.groups > 1
        if t.dim() >= 2 and w.shape[1] == 2 * t.shape[1] and not grouped:
            # input channels doubled: split each weight between the two copies
            e = (torch.rand(t.shape[1], generator=g) * 2 - 1) * spread
            shape = [1, t.shape[1]] + [1] * (t.dim() - 2)
            t = torch.cat([t * (0.5 + e).view(shape), t * (0.5 - e).view(shape)], 1)
        if w.shape[0] == 2 * t.shape[0]:
            t = torch.cat([t, t], 0)  # output channels (or per-channel BatchNorm values) repeated
        if t.shape != w.shape:
            raise SystemExit(f"{k}: could not map {tuple(v.shape)} to {tuple(w.shape)}")
        out[k] = t.contiguous()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", help="weights of a width-1 network (weights.pt, a snapshot, an average)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(0)
    ck = torch.load(a.ckpt, map_location="cpu")
    arch = dict(ck.get("arch") or {})
    if arch.get("width", 1.0) != 1.0 or arch.get("refine"):
        raise SystemExit(f"{a.ckpt}: architecture {arch}; widen.py doubles a width-1 network without the refinement path")
    full = arch.get("full_width", 16)
    narrow = PromptSegNet(ck["vocab_size"], **arch)
    narrow.load_state_dict(ck["model"])
    narrow.eval()
    wide_arch = dict(refine=False, width=2.0, full_width=2 * full)
    wide = PromptSegNet(ck["vocab_size"], **wide_arch)
    wide.load_state_dict(widened_state(narrow.state_dict(), wide, seed=a.seed))
    wide.eval()
    # the check: both encoders on random images, every output
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        fn, fw = narrow.image(x), wide.image(x)
    worst = 0.0
    for i, (p, q) in enumerate(zip(fn[:-1], fw[:-1])):
        d = (p - q).abs().max().item() / max(p.abs().max().item(), 1e-6)
        worst = max(worst, d)
        print(f"output {i}: shape {tuple(q.shape)}, largest difference {d:.2e} of its scale")
    pn, pw = fn[-1], fw[-1]
    d = (torch.cat([pn, pn], 1) - pw).abs().max().item() / max(pn.abs().max().item(), 1e-6)
    print(f"pooled: {tuple(pn.shape)} -> {tuple(pw.shape)} (the old vector twice), largest difference {d:.2e}")
    if max(worst, d) > 1e-3:
        raise SystemExit("the widened network does not compute what the original does")
    torch.save(dict(model=wide.state_dict(), step=0, vocab_size=ck["vocab_size"], arch=wide_arch, widened_from=os.path.relpath(a.ckpt)), a.out)
    n = sum(v.numel() for v in wide.state_dict().values() if v.is_floating_point())
    print(f"{a.out}: width {wide_arch['width']}, full-resolution width {wide_arch['full_width']}, {n / 1e6:.2f} M values", file=sys.stderr)


if __name__ == "__main__":
    main()
