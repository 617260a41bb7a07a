"""A plain U-Net (two 3x3 convolutions at each of 5 scales, skip connections, a full-resolution
decoder) trained from scratch on one dataset's training cases alone: an architecture unlike the
shipped network's (a MobileNet-style encoder shared by every structure, FiLM-conditioned FPN decoder
and dynamic mask heads), to tell whether a bar's plateau is that network's or the data's. It draws
one structure, takes no text, and exports as a specialist (`export.py --ckpt SNAPSHOT --specialist
NAME --structures SLUG`), whose decoder hands its logits to every prompt. The run checkpoints,
resumes and logs progress with an ETA like train.py.

    python3 models/train/unet_specialist.py --out runs/unet-em --steps 2000 --val-every 250
    python3 models/train/unet_specialist.py --dataset la2018_left_atrium_lge_mri --out runs/unet-la \
        --steps 1500 --val-every 250 --max-cases 40 --elastic 0.5 --transpose 0
    python3 models/train/unet_specialist.py --out runs/unet-em --eval-only [--split train]

Training: batches of 8, random 256 px native crops for tiled datasets (EM) or whole letterboxed
images, train.augment (affine, flips where anatomy allows, elastic deformations, axis swaps),
BCE + soft Dice, AdamW with a cosine learning rate. Validation: the val cases tiled as the service
tiles them (256 px, stride 192, logits averaged) or letterboxed, Dice at probability 0.5, as
validate.py measures. What it measured: models/promptseg-builtin/MODEL_CARD.md, Training 16.
"""
import argparse, json, math, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import SIZE, load_all  # noqa: E402
from train import ROOT, augment  # noqa: E402
import evaluate as ev  # noqa: E402


def block(ci, co):
    return nn.Sequential(nn.Conv2d(ci, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                         nn.Conv2d(co, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """[B,3,S,S] -> mask logits [B,outputs,S,S] (by default of its one structure, [B,1,S,S]);
    channels base x (1, 2, 4, 8, 16) over 5 scales. outputs > 1: one logit map per structure
    (task_baselines.py); the weight names do not depend on it."""

    def __init__(self, base=16, outputs=1):
        super().__init__()
        c = [base * m for m in (1, 2, 4, 8, 16)]
        self.down = nn.ModuleList([block(3, c[0])] + [block(c[i - 1], c[i]) for i in range(1, 5)])
        self.up = nn.ModuleList([block(c[i] + c[i + 1], c[i]) for i in range(4)])
        self.out = nn.Conv2d(c[0], outputs, 1)

    def forward(self, x):
        skips = []
        for i, d in enumerate(self.down):
            x = d(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in range(3, -1, -1):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([skips[i], x], 1))
        return self.out(x)


def predict(model, img):
    """img [H,W,3] uint8 -> logits [H,W], tiled as the service and evaluate.predict_tiled tile."""
    return ev.tile_average(img, lambda tile: (model(tile)[:, 0], None))[0][0]


def evaluate(model, d, split, max_cases=None, other=None):
    """Dice per case of the split's first max_cases cases (all by default): tiled datasets at native
    scale, the others on the letterboxed image, as validate.py measures them. other: (network of
    net.py, its text embedding of the structure) whose logits are averaged with the U-Net's."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in d.split_idx(split)[:max_cases]:
            if d.tiled:
                img, masks = d.native[i]
                lg, gt = predict(model, img), masks[0]
            else:
                lg, gt = model(ev.norm(d.images[i]))[0, 0], d.masks[i][0]
            if other:
                lg = (lg + ev.case_logits(other[0], d, i, other[1])[0][0]) / 2
            out.append(float(ev.dice((lg > 0).numpy(), gt)))
    model.train()
    return float(np.mean(out)), out


def crops(d, idx, n, g):
    """n random SIZE x SIZE native crops of the cases idx (tiled datasets) or n whole letterboxed
    cases -> x [n,3,S,S] normalised, y [n,1,S,S]."""
    xs, ys = [], []
    for _ in range(n):
        i = idx[int(torch.randint(len(idx), (1,), generator=g))]
        img, masks = d.native[i] if d.tiled else (d.images[i], d.masks[i])
        h, w = img.shape[:2]
        y0 = int(torch.randint(h - SIZE + 1, (1,), generator=g))
        x0 = int(torch.randint(w - SIZE + 1, (1,), generator=g))
        xs.append(ev.norm(img[y0:y0 + SIZE, x0:x0 + SIZE]))
        ys.append(torch.from_numpy(masks[0][y0:y0 + SIZE, x0:x0 + SIZE].astype(np.float32))[None, None])
    return torch.cat(xs), torch.cat(ys)


def train_step(model, opt, x, y, base_lr, step, steps, bf16=False):
    """One optimiser step of the U-Net recipe at a cosine learning rate: BCE + soft Dice (per sample
    and structure, smoothing 1, averaged). Returns the loss and the learning rate used. With bf16 the
    forward pass runs under bfloat16 autocast (weights, loss and optimiser stay float32)."""
    lr = base_lr * 0.5 * (1 + math.cos(math.pi * step / steps))
    for pg in opt.param_groups:
        pg["lr"] = lr
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        lg = model(x)
    lg = lg.float()
    p = torch.sigmoid(lg)
    soft_dice = 1 - (2 * (p * y).sum((2, 3)) + 1) / (p.sum((2, 3)) + y.sum((2, 3)) + 1)
    loss = F.binary_cross_entropy_with_logits(lg, y) + soft_dice.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, lr


def add_recipe_args(ap, steps, elastic, val_every):
    """The options a U-Net run of this file or task_baselines.py takes alike: data, cache, schedule, size, threads, seed."""
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", ".cache"))
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--elastic", type=float, default=elastic)
    ap.add_argument("--val-every", type=int, default=val_every)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset", default="isbi2012_em", help="one dataset of one structure (its first)")
    ap.add_argument("--max-cases", type=int, default=None, help="validate on the split's first N cases (validate.py takes 40)")
    add_recipe_args(ap, steps=2400, elastic=0.7, val_every=300)
    ap.add_argument("--transpose", type=float, default=0.5)
    ap.add_argument("--train-every", type=int, default=1,
                    help="train on every Nth training case only (a learning curve: 2 halves the data, evenly spread)")
    ap.add_argument("--eval-only", action="store_true", help="Dice of the run's last.pt (or --ckpt) on --split")
    ap.add_argument("--ckpt", default=None, help="with --eval-only: a snapshot instead of last.pt")
    ap.add_argument("--average-with", default=None, help="with --eval-only: a checkpoint of train.py (e.g. a specialist rebuilt by from_onnx.py) whose logits for the structure are averaged with the U-Net's")
    ap.add_argument("--split", choices=["val", "train"], default="val")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vocab = json.load(open(os.path.join(ROOT, "prompts", "vocabulary.json")))
    d = next((x for x in load_all(a.data, vocab, a.cache) if x.id == a.dataset), None)
    if d is None:
        raise SystemExit(f"--dataset: no dataset {a.dataset}")
    last = os.path.join(a.out, "last.pt")
    model = UNet(a.base)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    step, log = 0, []
    if os.path.exists(last):
        ck = torch.load(last, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["rng"])
        step, log = ck["step"], ck.get("log", [])
        print(f"resumed at step {step}", flush=True)
    if a.eval_only:
        if not a.ckpt and not step:
            raise SystemExit(f"--eval-only: {last} does not exist; name a snapshot with --ckpt")
        if a.ckpt:
            ck = torch.load(a.ckpt, map_location="cpu")
            model.load_state_dict(ck.get("model", ck))
            step = ck.get("step", "of " + a.ckpt)
        other = None
        if a.average_with:
            from net import from_checkpoint
            from tokenizer import WordPiece
            from train import training_texts
            net = from_checkpoint(torch.load(a.average_with, map_location="cpu"))
            by_slug = {s["slug"]: s for s in vocab["structures"]}
            other = (net, ev.encode_text(net, WordPiece.build(training_texts(vocab)), [by_slug[d.slugs[0]]["name"]]))
        mean, per = evaluate(model, d, a.split, a.max_cases, other)
        print(f"{a.split} Dice {mean:.4f} per case {[round(x, 3) for x in per]} (step {step})", flush=True)
        return
    os.makedirs(a.out, exist_ok=True)
    idx = list(d.split_idx("train"))[:: a.train_every]
    print(f"training on {len(idx)} cases", flush=True)
    flip_ok = torch.full((a.batch,), d.region != "thorax")  # as train.py: no flips of thoracic anatomy
    t0, seen0 = time.time(), step
    model.train()
    while step < a.steps:
        x, y = crops(d, idx, a.batch, g)
        x, y = augment(x, y, flip_ok, g, a.elastic, 6.0, a.transpose)
        loss, lr = train_step(model, opt, x, y, a.lr, step, a.steps)
        step += 1
        if step % 20 == 0:
            rate = (step - seen0) * a.batch / (time.time() - t0)
            eta = (a.steps - step) * a.batch / rate / 60
            print(f"step {step}/{a.steps} loss {loss.item():.4f} lr {lr:.2e} {rate:.1f} img/s ETA {eta:.1f} min", flush=True)
        if step % a.val_every == 0 or step == a.steps:
            mean, per = evaluate(model, d, "val", a.max_cases)
            log.append({"step": step, "val_dice": round(mean, 4)})
            print(f"step {step} val Dice {mean:.4f} per case {[round(v, 3) for v in per]}", flush=True)
            torch.save({"model": model.state_dict(), "step": step}, os.path.join(a.out, f"snapshot-{step:05d}.pt"))
        if step % 100 == 0 or step == a.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step,
                        "log": log, "args": vars(a)}, last)
    print(json.dumps(log), flush=True)


if __name__ == "__main__":
    main()
