"""Packs the train cases of ../shared/data/medseg2d, as data.py prepares them, into one small
bundle per dataset, so that a training run can be taken to a machine without the shared data
(the device tool carries at most 64 MiB): images WebP-coded (lossy, quality 90 by default: the
whole set is 175 MiB as PNG; mean absolute error about 1.5 grey levels), masks lossless and
bit-coded. Tiled datasets keep only the native-scale view; data.py letterboxes the whole view
from it. Validation and test cases are never packed.

    python3 models/train/pack.py --out models/.pack      # then train.py --data models/.pack
"""
import argparse, io, json, os, shutil, sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import load_all, load_vocabulary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def png(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG", optimize=True)
    return b.getvalue()


def image_webp(img, quality):
    """RGB array -> WebP bytes, one channel when the three are equal (grey modalities)."""
    if (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all():
        img = np.ascontiguousarray(img[..., 0])
    b = io.BytesIO()
    Image.fromarray(img).save(b, format="WEBP", quality=quality, method=4)
    return b.getvalue()


def masks_png(masks):
    """[k,H,W] bool (k <= 8) -> one PNG whose bit j is mask j."""
    v = np.zeros(masks.shape[1:], dtype=np.uint8)
    for j, m in enumerate(masks):
        v |= (m.astype(np.uint8) << j)
    return png(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", ".cache"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", ".pack"))
    ap.add_argument("--splits", default="train")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--vocabulary", default=None, help="the vocabulary whose datasets are packed (default prompts/vocabulary.json)")
    a = ap.parse_args()
    vocab = load_vocabulary(a.vocabulary)
    total = 0
    for d in load_all(a.data, vocab, a.cache):
        if "test" in a.splits.split(","):
            raise SystemExit("test cases are never packed: they are for the final evaluation only")
        keep = sorted({i for s in a.splits.split(",") for i in d.split_idx(s)})
        assert len(d.slugs) <= 8
        out = os.path.join(a.out, d.id)
        os.makedirs(out, exist_ok=True)
        for f in ("dataset.json", "splits.json"):
            shutil.copy(os.path.join(a.data, d.id, f), out)
        arr = lambda xs: np.array(xs + [b""], dtype=object)[:-1]  # 1-D object array of bytes
        z = dict(cases=np.array([d.cases[i] for i in keep]))
        if d.tiled:
            z["native_images"] = arr([image_webp(d.native[i][0], a.quality) for i in keep])
            z["native_masks"] = arr([masks_png(d.native[i][1]) for i in keep])
        else:
            z["images"] = arr([image_webp(d.images[i], a.quality) for i in keep])
            z["masks"] = arr([masks_png(d.masks[i]) for i in keep])
        np.savez(os.path.join(out, "pack.npz"), **z)
        size = os.path.getsize(os.path.join(out, "pack.npz"))
        total += size
        print(f"{d.id}: {len(keep)} cases, {size / 2**20:.1f} MiB", flush=True)
    print(f"total {total / 2**20:.1f} MiB in {a.out}")


if __name__ == "__main__":
    main()
