"""Exports image encoders of candidate architectures (random weights) to ONNX, so their speed can
be measured with onnxruntime-node before any training: the issue's bar is 80 ms per image on the
2-core machine, and a wider encoder leaves the per-prompt decoder's cost unchanged.

    python3 models/train/encoder_options.py --out /tmp/encoders            # the default candidates
    python3 models/train/encoder_options.py --out /tmp/encoders --arch w1.5:width=1.5,full_width=24,refine=1
    node dist/bench/encoder-speed.js /tmp/encoders/*.onnx
"""
import argparse, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import SIZE  # noqa: E402
from export import FEATS, OPSET, ImageExport  # noqa: E402
from net import ImageEncoder  # noqa: E402

CANDIDATES = [
    "shipped:width=1",
    "refine:refine=1",
    "w1.5-f24-refine:width=1.5,full_width=24,refine=1",
    "w2-f32-refine:width=2,full_width=32,refine=1",
    "w2.5-f32-refine:width=2.5,full_width=32,refine=1",
]


def parse(spec):
    """'name:key=value,...' -> (name, ImageEncoder keyword arguments)."""
    name, _, kv = spec.partition(":")
    if not name or not kv:
        raise SystemExit(f"--arch {spec!r}: expected NAME:key=value,... (keys: width, full_width, refine)")
    kw = {}
    for item in kv.split(","):
        k, _, v = item.partition("=")
        if k == "width":
            kw[k] = float(v)
        elif k == "full_width":
            kw[k] = int(v)
        elif k == "refine":
            kw[k] = v not in ("0", "false", "")
        else:
            raise SystemExit(f"--arch {spec!r}: unknown key {k!r} (keys: width, full_width, refine)")
    return name, kw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", action="append", help="NAME:key=value,... (default: the built-in candidate list)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    for spec in a.arch or CANDIDATES:
        name, kw = parse(spec)
        enc = ImageEncoder(**kw).eval()
        params = sum(p.numel() for p in enc.parameters())
        path = os.path.join(a.out, f"{name}.onnx")
        with torch.no_grad():
            torch.onnx.export(ImageExport(enc), (torch.zeros(1, 3, SIZE, SIZE),), path, opset_version=OPSET,
                              input_names=["pixel_values"], output_names=FEATS + ["pooled"])
        print(f"{path}: {kw}, {params / 1e6:.2f} M parameters", flush=True)


if __name__ == "__main__":
    main()
