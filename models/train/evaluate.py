"""Validation used during training: Dice per dataset/structure on present cases (whole-image
letterbox or native-scale tiling as the vocabulary says), and presence AUROC against absent
structures of other regions, empty in-dataset masks and nonsense prompts."""
import json, math, os

import numpy as np
import torch

from data import SIZE, negative_slugs
from net import FEATURES

MEAN, STD = 0.5, 0.25
TILE_STRIDE = 192


def norm(img):
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()[None] / 255.0
    return (x - MEAN) / STD


def token_batch(tok, texts):
    """Token ids of the texts, right-padded with 0, and the attention mask: two [N, L] long tensors."""
    ids = [tok.encode(t) for t in texts]
    L = max(len(x) for x in ids)
    it = torch.zeros(len(ids), L, dtype=torch.long)
    mt = torch.zeros(len(ids), L, dtype=torch.long)
    for r, x in enumerate(ids):
        it[r, :len(x)] = torch.tensor(x)
        mt[r, :len(x)] = 1
    return it, mt


def encode_text(model, tok, texts):
    it, mt = token_batch(tok, texts)
    dev = next(model.parameters()).device
    return model.text(it.to(dev), mt.to(dev))


def run_decoder(model, feats, e):
    """Decoder on one image's features for N prompts; logits at the input size."""
    n = e.shape[0]
    rep = [f.expand(n, -1, -1, -1) for f in feats[:len(FEATURES)]]
    return model.decoder(*rep, e)


def tile_origins(n):
    if n <= SIZE:
        return [0]
    o = list(range(0, n - SIZE, TILE_STRIDE)) + [n - SIZE]
    return sorted(set(o))


def predict_tiled(model, img, e, upscale=1):
    """img [H,W,3] uint8 at native scale -> logits [N,H,W], presence logits [N] (mean over tiles).
    upscale > 1: the image is enlarged that many times (bilinear) before tiling, as a network trained
    on enlarged crops is served (train.py --upscale), and the logits are resized back to native."""
    if upscale != 1:
        from PIL import Image
        h0, w0 = img.shape[:2]
        big = np.asarray(Image.fromarray(img).resize((round(w0 * upscale), round(h0 * upscale)), Image.BILINEAR))
        lg, pr = predict_tiled(model, big, e)
        lg = torch.nn.functional.interpolate(lg[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]
        return lg, pr
    def run(tile):
        lg, pr, _, _ = run_decoder(model, model.image(tile.to(e.device)), e)
        return lg[:, 0].cpu(), pr.cpu()
    lg, pres = tile_average(img, run)
    return lg, torch.stack(pres).mean(0)


def case_logits(model, d, i, e, tile_upscale=1):
    """Case i of dataset d as validation sees it (tiled datasets at native scale, the others
    letterboxed) -> mask logits [N,H,W] and presence logits of the N prompts embedded in e, and the
    case's masks [k,H,W] at the same size."""
    if d.tiled:
        img, masks = d.native[i]
        lg, pr = predict_tiled(model, img, e, tile_upscale)
        return lg, pr, masks
    lg, pr, _, _ = run_decoder(model, model.image(norm(d.images[i]).to(e.device)), e)
    return lg[:, 0].cpu(), pr.cpu(), d.masks[i]


def tile_average(img, run):
    """img [H,W,3] uint8 at native scale, padded to at least SIZE -> run(normalised tile [1,3,S,S])
    on SIZE px tiles with stride TILE_STRIDE, whose logits [N,S,S] are averaged where tiles overlap
    -> logits [N,H,W] and the list of run's second outputs, one per tile."""
    h, w = img.shape[:2]
    pad = np.pad(img, ((0, max(SIZE - h, 0)), (0, max(SIZE - w, 0)), (0, 0)))
    H, W = pad.shape[:2]
    acc, cnt, extra = None, torch.zeros(1, H, W), []
    for y in tile_origins(H):
        for x in tile_origins(W):
            lg, ex = run(norm(pad[y:y + SIZE, x:x + SIZE]))
            if acc is None:
                acc = torch.zeros(lg.shape[0], H, W)
            acc[:, y:y + SIZE, x:x + SIZE] += lg
            cnt[:, y:y + SIZE, x:x + SIZE] += 1
            extra.append(ex)
    return (acc / cnt)[:, :h, :w], extra


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * (a & b).sum() / s


def auroc(pos, neg):
    if not pos or not neg:
        return float("nan")
    s = np.array(pos + neg)
    lab = np.array([1] * len(pos) + [0] * len(neg))
    order = s.argsort()
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    return float((ranks[lab == 1].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def validate(model, datasets, vocab, tok, split="val", max_cases=40, tile_upscale=1):
    by_slug = {s["slug"]: s for s in vocab["structures"]}
    others = lambda ds_id: negative_slugs(vocab, ds_id)
    rng = np.random.RandomState(0)
    dices, pos, neg, empty_ok = {}, [], [], []
    for d in datasets:
        idx = d.split_idx(split)[:max_cases]
        texts = [by_slug[s]["name"] for s in d.slugs]
        neg_slugs = list(rng.choice(others(d.id), 2, replace=False))
        neg_texts = [by_slug[s]["name"] for s in neg_slugs] + [vocab["nonsense"]["eval"][rng.randint(len(vocab["nonsense"]["eval"]))]]
        e = encode_text(model, tok, texts + neg_texts)
        for i in idx:
            lg, pr, gts = case_logits(model, d, i, e, tile_upscale)
            probs = torch.sigmoid(pr).numpy()
            for j, s in enumerate(d.slugs):
                gt = gts[j]
                pm = (lg[j] > 0).numpy()
                if gt.any():
                    dices.setdefault(f"{d.id}/{s}", []).append(dice(pm, gt))
                    pos.append(float(probs[j]))
                else:
                    neg.append(float(probs[j]))
            for j in range(len(texts), len(texts) + len(neg_texts)):
                neg.append(float(probs[j]))
                empty_ok.append(bool(probs[j] < 0.5))
    per = {k: round(float(np.mean(v)), 4) for k, v in sorted(dices.items())}
    mean_dice = float(np.mean(list(per.values())))
    au = auroc(pos, neg)
    return dict(split=split, dice=per, mean_dice=round(mean_dice, 4), presence_auroc=round(au, 4),
                absent_rejected=round(float(np.mean(empty_ok)), 4), score=round(mean_dice + 0.5 * au, 4))
