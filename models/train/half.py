"""Writes a checkpoint's weights with floating-point tensors in float16 (half the bytes), so that a
width-2 network travels to a lent GPU inside the device tool's 64 MiB with the data pack; train.py's
--init and net.from_checkpoint cast them back to float32 on loading.

    python3 models/train/half.py IN.pt -o OUT.pt
"""
import argparse

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    if "model" not in ck:
        raise SystemExit(f"{a.ckpt}: no 'model' weights in this file")
    ck = {k: v for k, v in ck.items() if k in ("model", "step", "vocab_size", "arch", "fraction")}
    ck["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
    torch.save(ck, a.out)
    print(f"{a.out}: {sum(v.numel() for v in ck['model'].values()):,} weights in float16")


if __name__ == "__main__":
    main()
