"""The task-specific side of the few-shot comparison: a U-Net trained from scratch on exactly the
support images an adapter saw (the plan `promptseg eval eval/suites/fewshot.json` writes), its
checkpoint chosen on the val split, scored on test the way the adapters are (Dice at probability
0.5 on present test cases, at the image's own size).

    promptseg eval eval/suites/fewshot.json --out runs/fewshot          # writes runs/fewshot/plan.json
    python3 models/train/fewshot_unet.py --plan runs/fewshot/plan.json \\
        --out eval/results/fewshot/unet.json [--steps 600] [--size 128] [--datasets A,B] [--ks 10,all]

The network is unet_specialist.UNet at base width 8 (8-128 channels over 5 scales), on images
letterboxed to --size, batches of 8 with random crops (70-100% of each side) and grey-level jitter,
as the adapters get; no flips (the left kidney has a side). BCE + soft Dice, AdamW, cosine learning
rate; the val Dice is measured every --val-every steps and the best checkpoint scores test. The
file is written after every run, so a stopped job keeps what it finished and resumes after it.
"""
import argparse, json, math, os, random, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_specialist import UNet  # noqa: E402
from data import letterbox as data_letterbox, letterbox_geometry  # noqa: E402


def letterbox(arr, size, resample):
    """data.py's letterbox of an array, with the geometry that maps logits back to the image."""
    h, w = arr.shape[:2]
    nh, nw, top, left = letterbox_geometry(h, w, size)
    return data_letterbox(Image.fromarray(arr), size, resample), (top, left, nh, nw)


def read_case(root, structure, case):
    name = next(f for f in os.listdir(os.path.join(root, "images")) if os.path.splitext(f)[0] == case)
    img = np.asarray(Image.open(os.path.join(root, "images", name)).convert("RGB"))
    mask = np.asarray(Image.open(os.path.join(root, "masks", structure, case + ".png")).convert("L")) > 127
    return img, mask


def jitter(img, mask, rng):
    """A crop of 70-100% of each side, grey levels stretched by up to 15% and shifted by up to 8%."""
    h, w = mask.shape
    ch, cw = max(8, round(h * rng.uniform(0.7, 1))), max(8, round(w * rng.uniform(0.7, 1)))
    top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
    img = img[top:top + ch, left:left + cw].astype(np.float32)
    img = np.clip((img - 127.5) * rng.uniform(0.85, 1.15) + 127.5 + rng.uniform(-0.08, 0.08) * 255, 0, 255).astype(np.uint8)
    return img, mask[top:top + ch, left:left + cw]


def to_tensor(imgs):
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)


def predict_mask(net, img, size):
    """Logits on the letterboxed image, mapped back to the image's own size, thresholded at 0.5."""
    lb, (top, left, nh, nw) = letterbox(img, size, Image.BILINEAR)
    with torch.no_grad():
        z = net(to_tensor([lb]))[0, 0, top:top + nh, left:left + nw]
        z = F.interpolate(z[None, None], size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    return (z >= 0).numpy()


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def train_one(entry, args, seed):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    root, st = entry["data_root"], entry["structure"]
    support = [read_case(root, st, c) for c in entry["support"]]
    val = [read_case(root, st, c) for c in entry["val"]]
    test = [read_case(root, st, c) for c in entry["test"]]
    net = UNet(base=8)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        net.train()
        for g in opt.param_groups:
            g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * (step - 1) / args.steps))
        imgs, masks = [], []
        for _ in range(args.batch):
            img, mask = support[rng.randrange(len(support))]
            img, mask = jitter(img, mask, rng)
            imgs.append(letterbox(img, args.size, Image.BILINEAR)[0])
            masks.append(letterbox(mask.astype(np.uint8) * 255, args.size, Image.NEAREST)[0] > 127)
        x, y = to_tensor(imgs), torch.from_numpy(np.stack(masks)).float()[:, None]
        z = net(x)
        p = torch.sigmoid(z)
        loss = F.binary_cross_entropy_with_logits(z, y) + 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.val_every == 0 or step == args.steps:
            net.eval()
            present = [(i, m) for i, m in val if m.any()] or [(i, m) for i, m in support if m.any()]
            d = float(np.mean([dice(predict_mask(net, i, args.size), m) for i, m in present]))
            if d > best:
                best, best_state = d, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    return best, [float(dice(predict_mask(net, i, args.size), m)) for i, m in test if m.any()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--datasets", default="", help="comma-separated dataset ids to run (default: every one in the plan)")
    ap.add_argument("--ks", default="", help="comma-separated k values to run, e.g. 10,all (default: every one in the plan)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plan = json.load(open(args.plan))
    only = set(filter(None, args.datasets.split(",")))
    ks = set(filter(None, args.ks.split(",")))
    done = json.load(open(args.out)) if os.path.exists(args.out) else {"recipe": vars(args), "runs": []}
    key = lambda e: (e["dataset"], str(e["k"]), e["draw"])
    have = {key(r) for r in done["runs"]}
    for e in plan:
        if key(e) in have or (only and e["dataset"] not in only) or (ks and str(e["k"]) not in ks):
            continue
        t0 = time.time()
        val_dice, test_dice = train_one(e, args, seed=e["draw"] + 1)
        done["runs"].append({"dataset": e["dataset"], "k": e["k"], "draw": e["draw"], "support": e["support"], "val_dice": val_dice,
                             "test_dice": test_dice, "test_dice_mean": float(np.mean(test_dice)), "seconds": round(time.time() - t0, 1)})
        tmp = args.out + ".partial"
        json.dump(done, open(tmp, "w"), indent=1)
        os.replace(tmp, args.out)
        print(f"{e['dataset']} k={e['k']} draw {e['draw']}: val {val_dice:.3f} test {np.mean(test_dice):.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
