"""Trains the built-in promptseg model on ../shared/data/medseg2d (train splits only).

    python3 models/train/train.py --steps 6000          # resumes from the last checkpoint
Progress (loss, images/s, ETA) goes to stdout; checkpoints to models/promptseg-builtin/train-state/.
On a GPU (`--device cuda`), batches are made by `--workers` processes and the run can be bounded
by wall time (`--minutes`), with weights-only snapshots at fractions of it (`--snapshots`).
"""
import argparse, json, math, os, random, sys, time

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import SIZE, PromptSampler, load_all, load_vocabulary, negative_slugs  # noqa: E402
from net import FEATURES, PromptSegNet  # noqa: E402
from tokenizer import WordPiece  # noqa: E402
import evaluate as ev  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEAN, STD = 0.5, 0.25


def training_texts(vocab):
    texts = []
    for s in vocab["structures"]:
        texts += [s["name"], s["slug"].replace("_", " ")] + s["synonyms"]
    for t in vocab["templates"]["train"]:
        texts.append(t.replace("{s}", " ").replace("{m}", " "))
    for d in vocab["datasets"]:
        texts += d["modality_words"]
    texts += vocab["nonsense"]["train"]
    return texts


def normalise(x):
    """uint8 images [B,3,S,S] -> the network's float input, on whatever device x is."""
    return (x.float() / 255.0 - MEAN) / STD


class Batcher:
    def __init__(self, datasets, vocab, tok, rng, batch, k, p_zoom=0.0, upscale=1, boost=None, p_upscale=0.6, p_native=0.7, small_weight=0.0, mirror=()):
        boost = boost or {}
        self.ds, self.vocab, self.tok, self.rng, self.batch, self.k = datasets, vocab, tok, rng, batch, k
        self.prompts = PromptSampler(vocab, rng)
        self.train_idx = [d.split_idx("train") for d in datasets]
        w = np.array([max(math.sqrt(len(t)), 6.0) * boost.get(d.id, 1.0) for t, d in zip(self.train_idx, datasets)])
        self.p_zoom, self.upscale, self.p_upscale, self.p_native = p_zoom, upscale, p_upscale, p_native
        self.mirror = set(mirror)  # thoracic datasets whose images may be flipped all the same
        for d in datasets:  # laterality needs the whole field of view; tiled data is cropped natively
            d.zoomable = not d.tiled and d.id not in NO_ZOOM
        self.weights = w / w.sum()
        # with small_weight > 0, whole-image cases whose structures are small are drawn more often
        self.case_weights = [self.small_case_weights(d, t, small_weight) for d, t in zip(datasets, self.train_idx)]
        self.negatives = {d.id: negative_slugs(vocab, d.id) for d in datasets}

    @staticmethod
    def small_case_weights(d, idx, power):
        """Sampling weights of a dataset's training cases: (median area / case area) ** power, within
        [1/4, 4], the area being that of the case's largest present structure at the letterboxed size;
        cases with no structure weigh 1. None (uniform) for power 0 and for tiled datasets."""
        if power <= 0 or d.tiled:
            return None
        area = d.masks[idx].reshape(len(idx), len(d.slugs), -1).sum(-1).max(1).astype(np.float64)
        present = area > 0
        if not present.any():
            return None
        w = np.ones(len(idx))
        w[present] = np.clip((np.median(area[present]) / area[present]) ** power, 0.25, 4.0)
        return list(w)

    def crop_native(self, d, i):
        img, masks = d.native[i]
        if self.upscale > 1 and self.rng.random() < self.p_upscale:
            # thin structures served at `upscale` x native resolution (manifest tile.upscale): crop
            # SIZE/upscale native pixels and enlarge them to SIZE
            c = SIZE // self.upscale
            h, w = img.shape[:2]
            y, x = self.rng.randint(0, max(h - c, 0)), self.rng.randint(0, max(w - c, 0))
            return resize_pair(img[y:y + c, x:x + c], masks[:, y:y + c, x:x + c])
        h, w = img.shape[:2]
        ph, pw = max(SIZE - h, 0), max(SIZE - w, 0)
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            masks = np.pad(masks, ((0, 0), (0, ph), (0, pw)))
        h, w = img.shape[:2]
        y, x = self.rng.randint(0, h - SIZE), self.rng.randint(0, w - SIZE)
        return img[y:y + SIZE, x:x + SIZE], masks[:, y:y + SIZE, x:x + SIZE]

    def zoom(self, img, masks, j):
        """Crop around structure j's box with a random margin and enlarge to SIZE: the model learns
        the second, zoomed-in look that inference takes at small structures (refine pass)."""
        ys, xs = np.nonzero(masks[j])
        if len(ys) == 0:
            return img, masks
        bh, bw = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
        side = int(min(SIZE, max(bh, bw) * (1 + 2 * self.rng.uniform(0.15, 0.6)) + 8))
        if side > 0.75 * SIZE:
            return img, masks
        cy = (ys.min() + ys.max() + 1) / 2 + self.rng.uniform(-0.1, 0.1) * side
        cx = (xs.min() + xs.max() + 1) / 2 + self.rng.uniform(-0.1, 0.1) * side
        top = int(round(min(max(cy - side / 2, 0), SIZE - side)))
        left = int(round(min(max(cx - side / 2, 0), SIZE - side)))
        return resize_pair(img[top:top + side, left:left + side], masks[:, top:top + side, left:left + side])

    def negative(self, d):
        if self.rng.random() < 0.25:
            return self.prompts.nonsense_prompt(), None
        extra = next(x.get("extra_negatives", []) for x in self.vocab["datasets"] if x["id"] == d.id)
        slug = self.rng.choice(self.negatives[d.id] + extra * 2)
        words = next(x["modality_words"] for x in self.vocab["datasets"] if x["id"] == self.vocab_ds_of(slug))
        return self.prompts.phrase(slug, words), slug

    def vocab_ds_of(self, slug):
        return next(s["datasets"][0] for s in self.vocab["structures"] if s["slug"] == slug)

    def next(self):
        imgs, targets, texts, slugs, present, flip_ok = [], [], [], [], [], []
        for _ in range(self.batch):
            di = self.rng.choices(range(len(self.ds)), weights=self.weights)[0]
            d = self.ds[di]
            cw = self.case_weights[di]
            i = self.rng.choice(self.train_idx[di]) if cw is None else self.rng.choices(self.train_idx[di], weights=cw)[0]
            if d.tiled and self.rng.random() < self.p_native:
                img, masks = self.crop_native(d, i)
            else:
                img, masks = d.images[i], d.masks[i]
                pres0 = np.flatnonzero(d.present[i])
                if d.zoomable and len(pres0) and self.rng.random() < self.p_zoom:
                    img, masks = self.zoom(img, masks, int(self.rng.choice(list(pres0))))
            imgs.append(img)
            flip_ok.append(d.region != "thorax" or d.id in self.mirror)
            pres = masks.reshape(len(d.slugs), -1).any(-1)
            order = list(range(len(d.slugs)))
            self.rng.shuffle(order)
            first = next((j for j in order if pres[j]), order[0]) if self.rng.random() < 0.85 else order[0]
            chosen = [first] + ([j for j in order if j != first][:1] if len(d.slugs) > 1 else [])
            for j in chosen:
                texts.append(self.prompts.phrase(d.slugs[j], d.modality_words))
                slugs.append(d.slugs[j])
                targets.append(masks[j])
                present.append(bool(pres[j]))
            while len(texts) % self.k:
                t, s = self.negative(d)
                texts.append(t)
                slugs.append(s)
                targets.append(np.zeros((SIZE, SIZE), dtype=bool))
                present.append(False)
        id_t, m_t = ev.token_batch(self.tok, texts)
        # uint8 images and bool masks: a quarter of float32's bytes between processes; the
        # conversion runs where training does (normalise)
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(np.stack(targets)).view(self.batch, self.k, SIZE, SIZE)
        return x, y, id_t, m_t, slugs, torch.tensor(present, dtype=torch.float32), torch.tensor(flip_ok)


NO_ZOOM = {"jsrt_scr_cxr"}


def resize_pair(img, masks):
    """Image crop (bilinear) and its masks (bilinear, thresholded) to SIZE x SIZE."""
    im = np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BILINEAR))
    ms = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((SIZE, SIZE), Image.BILINEAR)) > 127 for m in masks])
    return im, ms


def degrade(v, on, g):
    """Acquisition degradations of images v [B,C,H,W] in [0, 1], each sample where `on` holds getting one
    of three, drawn evenly: Gaussian noise (standard deviation uniform in [0.01, 0.06], the same in every
    channel, so grey images stay grey), Gaussian blur (sigma uniform in [0.4, 1.2] px) or a lower
    acquisition resolution (down by a factor uniform in [1.3, 2], bilinearly, then back up): scanners,
    sequences and reconstructions differ between patients and sites."""
    B, C, H, W = v.shape
    dev = v.device
    kind = torch.randint(0, 3, (B,), generator=g)
    amount = torch.rand(B, generator=g)
    noise = torch.randn(B, 1, H, W, generator=g).to(dev) * (0.01 + 0.05 * amount).to(dev).view(B, 1, 1, 1)
    out = []
    for i in range(B):
        vi = v[i:i + 1]
        if not on[i]:
            out.append(vi)
        elif kind[i] == 0:
            out.append((vi + noise[i:i + 1]).clamp(0, 1))
        elif kind[i] == 1:
            sigma = 0.4 + 0.8 * float(amount[i])
            r = torch.arange(-3, 4, dtype=v.dtype, device=dev)
            k = torch.exp(-r ** 2 / (2 * sigma ** 2))
            k = k / k.sum()
            t = F.pad(vi, (3, 3, 3, 3), mode="replicate")
            t = F.conv2d(t, k.view(1, 1, 1, 7).expand(C, 1, 1, 7), groups=C)
            out.append(F.conv2d(t, k.view(1, 1, 7, 1).expand(C, 1, 7, 1), groups=C))
        else:
            f = 1.3 + 0.7 * float(amount[i])
            small = F.interpolate(vi, size=(max(8, int(H / f)), max(8, int(W / f))), mode="bilinear", align_corners=False, antialias=True)
            out.append(F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False))
    return torch.cat(out, 0)


def augment(x, y, flip_ok, g, elastic=0.0, elastic_px=6.0, transpose=0.0, colour=0.0, degraded=0.0, hflip=0.5, vflip=0.3):
    """Random affine (scale, rotation, shift), flips where anatomy allows, intensity jitter.
    Optionally also: with probability `elastic`, a smooth random deformation of any sample
    (displacements drawn on a 5 x 5 grid with a standard deviation of `elastic_px` pixels,
    bicubically interpolated; the remedy for few training images of the U-Net paper; a few pixels
    of smooth displacement never move a structure to the other side, so lateral anatomy gets it
    too), and, where flips are allowed, with probability `transpose`, a swap of the image axes
    (with the flips, all eight right-angle rotations and reflections: for images with no
    preferred orientation, such as EM sections).
    With probability `colour`, a colour image (endoscopy, dermoscopy, fundus, histology; never a
    grey one) also gets a white-balance and saturation change: each channel's gain drawn from
    exp(N(0, 0.08)), saturation scaled by a factor in [1/1.5, 1.5] (another camera or stain).
    With probability `degraded`, any sample gets noise, blur or a lower resolution (degrade).
    Where flips are allowed, a horizontal flip has probability `hflip` and a vertical one `vflip`.
    The random draws come from the CPU generator g; the resampling runs where x is."""
    B = x.shape[0]
    dev = x.device
    ang = (torch.rand(B, generator=g) - 0.5) * 2 * math.radians(12)
    sc = torch.exp((torch.rand(B, generator=g) - 0.5) * 2 * math.log(1.25))
    tx, ty = [(torch.rand(B, generator=g) - 0.5) * 0.2 for _ in range(2)]
    fx = torch.where(flip_ok & (torch.rand(B, generator=g) < hflip), -1.0, 1.0)
    fy = torch.where(flip_ok & (torch.rand(B, generator=g) < vflip), -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * fx, -sin * fy, tx
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * fx, cos * fy, ty
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    if elastic > 0:
        H, W = x.shape[-2:]
        on = (torch.rand(B, generator=g) < elastic).float().view(B, 1, 1, 1)
        # displacements in pixels on a coarse grid -> grid_sample's [-1, 1] units (2 / side per pixel)
        coarse = torch.randn(B, 2, 5, 5, generator=g) * elastic_px * on
        field = F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True)
        field = field * torch.tensor([2.0 / W, 2.0 / H]).view(1, 2, 1, 1)
        grid = grid + field.permute(0, 2, 3, 1).to(dev)
    pad = (0 - MEAN) / STD
    x = F.grid_sample(x - pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).float()
    if transpose > 0:
        t = (flip_ok & (torch.rand(B, generator=g) < transpose)).to(dev).view(B, 1, 1, 1)
        x = torch.where(t, x.transpose(-1, -2), x)
        y = torch.where(t, y.transpose(-1, -2), y)
    # intensity: contrast, brightness, gamma on [0,1]
    v = (x * STD + MEAN).clamp(0, 1)
    gamma = torch.exp((torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 2 * math.log(1.4)).to(dev)
    v = v ** gamma
    c = 1 + (torch.rand(B, 1, 1, 1, generator=g).to(dev) - 0.5) * 0.4
    b = (torch.rand(B, 1, 1, 1, generator=g).to(dev) - 0.5) * 0.2
    v = ((v - 0.5) * c + 0.5 + b).clamp(0, 1)
    if colour > 0:
        # grey images have equal channels (the intensity changes above keep them so)
        coloured = (v[:, 0] - v[:, 1]).abs().amax((1, 2)) + (v[:, 1] - v[:, 2]).abs().amax((1, 2)) > 1e-3
        on = (torch.rand(B, generator=g).to(dev) < colour) & coloured
        gain = torch.exp(torch.randn(B, 3, generator=g) * 0.08).to(dev).view(B, 3, 1, 1)
        sat = torch.exp((torch.rand(B, generator=g) - 0.5) * 2 * math.log(1.5)).to(dev).view(B, 1, 1, 1)
        grey = v.mean(1, keepdim=True)
        jittered = ((grey + (v - grey) * sat) * gain).clamp(0, 1)
        v = torch.where(on.view(B, 1, 1, 1), jittered, v)
    if degraded > 0:
        v = degrade(v, torch.rand(B, generator=g) < degraded, g)
    return (v - MEAN) / STD, y


def losses(model, x, y, ids, mask, slugs, present, k):
    feats = model.image(x.contiguous(memory_format=torch.channels_last))
    rep = [f.repeat_interleave(k, 0) for f in feats[:len(FEATURES)]]
    e = model.text(ids, mask)
    logits, pres, qual, _ = model.decoder(*rep, e)
    t = y.reshape(-1, 1, SIZE, SIZE)  # the mask head works at the input size
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = torch.sigmoid(logits).flatten(1)
    tf = t.flatten(1)
    dice = 1 - (2 * (p * tf).sum(1) + 1) / (p.sum(1) + tf.sum(1) + 1)
    dice_l = (dice * present).sum() / present.sum().clamp(min=1)
    pres_l = F.binary_cross_entropy_with_logits(pres, present)
    with torch.no_grad():
        hard = (logits.flatten(1) > 0).float()
        inter = (hard * tf).sum(1)
        iou = inter / (hard.sum(1) + tf.sum(1) - inter).clamp(min=1)
    qual_l = (F.binary_cross_entropy_with_logits(qual, iou, reduction="none") * present).sum() / present.sum().clamp(min=1)
    # CLIP-style alignment of text embeddings with mask-pooled image regions of the named structure
    idx = [r for r in range(len(slugs)) if present[r] > 0 and slugs[r] is not None]
    clip_l = torch.zeros((), device=x.device)
    if len(idx) > 1:
        region = model.decoder.region_embedding(rep[FEATURES.index("embed_map")][idx], t[idx])
        te = e[idx]
        sim = model.decoder.logit_scale.exp().clamp(max=100) * region @ te.t()
        same = torch.tensor([[slugs[a] == slugs[b] for b in idx] for a in idx], dtype=torch.float32, device=x.device)
        tgt = same / same.sum(1, keepdim=True)
        clip_l = 0.5 * (-(tgt * F.log_softmax(sim, 1)).sum(1).mean() - (tgt * F.log_softmax(sim.t(), 1)).sum(1).mean())
    total = bce + dice_l + 0.5 * pres_l + 0.2 * qual_l + 0.1 * clip_l
    return total, dict(bce=bce.item(), dice=dice_l.item(), pres=pres_l.item(), qual=qual_l.item(), clip=clip_l.item())


class BatchStream(torch.utils.data.IterableDataset):
    """Endless batches for a DataLoader: each worker process runs its own Batcher and RNG."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        torch.set_num_threads(1)
        b = self.make(info.id if info else 0)
        while True:
            yield b.next()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "promptseg-builtin"))
    ap.add_argument("--vocabulary", default=None, help="the vocabulary to train (make_vocabulary.py's output; default prompts/vocabulary.json)")
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", ".cache"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--zoom", type=float, default=0.0, help="probability of a zoomed crop around a present structure (non-tiled datasets except chest X-ray)")
    ap.add_argument("--upscale", type=int, default=1, help="tiled datasets: also train on SIZE/upscale native crops enlarged upscale x")
    ap.add_argument("--upscale-p", type=float, default=0.6, help="with --upscale: the share of native crops that are enlarged (1: all, for a specialist served only at that scale)")
    ap.add_argument("--native-p", type=float, default=0.7, help="tiled datasets: the share of samples that are native-scale crops (the rest are whole letterboxed images)")
    ap.add_argument("--boost", default="", help="dataset sampling multipliers, e.g. acdc_cardiac_mri=1.6,lgg_flair_mri=1.5")
    ap.add_argument("--init-fresh", default="", help="with --init: comma-separated weight-name prefixes to leave freshly initialised, e.g. image. (the image encoder trains from scratch)")
    ap.add_argument("--train-only", default="", help="comma-separated weight-name prefixes to train (e.g. image.); every other weight is frozen and its BatchNorm statistics kept")
    ap.add_argument("--init", default=None, help="start from these weights (e.g. models/promptseg-builtin/weights.pt) when there is no checkpoint to resume")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--workers", type=int, default=0, help="processes making batches (0: in the training process)")
    ap.add_argument("--minutes", type=float, default=0, help="bound the run by wall time: the learning-rate schedule follows elapsed/minutes and the run stops at the end (--steps is then only an upper bound; a resumed run starts its minutes again)")
    ap.add_argument("--snapshots", default="", help="with --snapshot-dir: fractions of the run at which weights-only checkpoints are written, e.g. 0.5,0.75,1")
    ap.add_argument("--snapshot-dir", default=None)
    ap.add_argument("--snapshot-half", action="store_true", help="store snapshots' floating-point tensors as float16 (half the size: a width-2 encoder's 18 MiB of weights exceed what the device tool brings back in one file); loading casts them back to float32")
    ap.add_argument("--state-dir", default=None, help="checkpoints and best.pt (default: <model-dir>/train-state)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (2 on the 2-core machine)")
    ap.add_argument("--refine", action="store_true", help="the image encoder's top-down refinement of the fine features (net.py); a resumed run keeps its checkpoint's choice")
    ap.add_argument("--amp", action="store_true", help="run the network's forward pass and losses under bfloat16 autocast (meant for GPUs; weights and optimiser stay float32)")
    ap.add_argument("--width", type=float, default=1.0, help="image encoder channel multiplier (net.py); the per-prompt decoder is unchanged; a resumed run keeps its checkpoint's")
    ap.add_argument("--full-width", type=int, default=16, help="hidden channels of the image encoder's full-resolution branch; a resumed run keeps its checkpoint's")
    ap.add_argument("--elastic", type=float, default=0.0, help="probability of a smooth random (elastic) deformation of a sample (augment)")
    ap.add_argument("--elastic-px", type=float, default=6.0, help="standard deviation in pixels of the elastic deformation's displacements on its 5 x 5 grid")
    ap.add_argument("--colour", type=float, default=0.0, help="probability of a white-balance and saturation change of a colour sample (grey images are left grey): endoscopes, cameras and stains differ")
    ap.add_argument("--transpose", type=float, default=0.0, help="probability of swapping a sample's image axes where its anatomy allows flips (with the flips: all right-angle rotations); for orientation-free images such as EM")
    ap.add_argument("--small-weight", type=float, default=0.0, help="draw a whole-image dataset's training cases with weight (median area / area) ** P of their largest present structure, within [1/4, 4] (0: uniformly); small cross-sections such as the left atrium's top and bottom slices come up more often")
    ap.add_argument("--mirror", default="", help="comma-separated thoracic datasets whose samples get flips all the same: for a specialist on one dataset with no left/right pair of labels to swap, such as la2018_left_atrium_lge_mri")
    ap.add_argument("--hflip", type=float, default=0.5, help="probability of a horizontal flip where anatomy allows flips (augment)")
    ap.add_argument("--vflip", type=float, default=0.3, help="probability of a vertical flip where anatomy allows flips (augment; 0 with --transpose 0 keeps every sample's up and down, as a label convention tied to the image axes needs)")
    ap.add_argument("--degrade", type=float, default=0.0, help="probability of an acquisition degradation of a sample: noise, blur or a lower resolution (augment)")
    ap.add_argument("--head", type=int, default=0, help="channels of the mask decoder's full-resolution head (net.py; 0: none); a resumed run keeps its checkpoint's")
    ap.add_argument("--freeze-known-text", nargs="?", const="init", default=None, metavar="TOKENIZER_DIR", help="with --init and a grown vocabulary: the text encoder stays as initialised for every token it knew (its transformer and those tokens' embeddings are frozen; only the new tokens' rows train), so a phrase of known words embeds exactly as before and specialists fine-tuned on those embeddings stay valid. The known tokens are those of the --init weights' tokenizer.json, or of the one in TOKENIZER_DIR (models/promptseg-builtin, to go on training a grown model whose new rows should keep learning)")
    ap.add_argument("--bn-frozen", action="store_true", help="keep every BatchNorm's statistics as given (eval mode) while training, as a network rebuilt from ONNX graphs needs (from_onnx.py)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    vocab = load_vocabulary(a.vocabulary)
    # fine-tuning keeps the tokens the initial weights were trained with at their ids (new words of
    # a grown vocabulary are appended; their embedding rows start fresh, the others are copied)
    init_tok = os.path.join(os.path.dirname(a.init), "tokenizer.json") if a.init else None
    keep = json.load(open(init_tok))["model"]["vocab"] if init_tok and os.path.exists(init_tok) else None
    tok = WordPiece.build(training_texts(vocab), keep=keep)
    tok.save(a.model_dir)
    state_dir = a.state_dir or os.path.join(a.model_dir, "train-state")
    os.makedirs(state_dir, exist_ok=True)
    t0 = time.time()
    datasets = load_all(a.data, vocab, a.cache)
    print(f"data ready in {time.time() - t0:.0f}s: " + ", ".join(f"{d.id}={len(d.split_idx('train'))}" for d in datasets), flush=True)

    step, best = 0, -1.0
    ck = os.path.join(state_dir, "last.pt")
    resume = torch.load(ck, map_location="cpu") if os.path.exists(ck) and not a.bench else None
    arch = resume.get("arch", {}) if resume else dict(refine=a.refine, width=a.width, full_width=a.full_width, head=a.head)
    model = PromptSegNet(len(tok.vocab), **arch).to(memory_format=torch.channels_last)
    if resume:
        model.load_state_dict(resume["model"])
    elif a.init:
        # weights whose shape differs (a wider encoder) start fresh, like those the init file lacks
        own = model.state_dict()
        fresh_prefixes = tuple(p for p in a.init_fresh.split(",") if p)
        given = {k: v for k, v in torch.load(a.init, map_location="cpu")["model"].items() if not (fresh_prefixes and k.startswith(fresh_prefixes))}
        unexpected = [k for k in given if k not in own]
        if unexpected:
            raise SystemExit(f"--init {a.init} has weights this network lacks: {unexpected[:8]}")
        resized = [k for k, v in given.items() if v.shape != own[k].shape]
        # a grown token embedding keeps its trained rows; only the new tokens' rows start fresh
        grown = [k for k in resized if given[k].dim() == own[k].dim() and given[k].shape[1:] == own[k].shape[1:] and given[k].shape[0] < own[k].shape[0] and k.endswith("tok.weight")]
        for k in grown:
            t = own[k].clone()
            t[: given[k].shape[0]] = given[k]
            print(f"{k}: the {given[k].shape[0]} known tokens' rows kept, {t.shape[0] - given[k].shape[0]} new ones fresh", flush=True)
            given[k] = t
        resized = [k for k in resized if k not in grown]
        missing, _ = model.load_state_dict({k: v for k, v in given.items() if k not in resized}, strict=False)
        fresh = missing + resized
        print(f"initialised from {a.init}" + (f"; {len(fresh)} tensors new or resized, freshly initialised: {fresh[:6]}{' ...' if len(fresh) > 6 else ''}" if fresh else ""), flush=True)
    model.to(dev)
    train_only = tuple(p for p in a.train_only.split(",") if p)
    if train_only:
        for k, p in model.named_parameters():
            p.requires_grad_(k.startswith(train_only))
        print(f"training only {train_only}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} of {sum(p.numel() for p in model.parameters()):,} weights", flush=True)
    known_rows = None
    if a.freeze_known_text:
        if a.freeze_known_text != "init":
            keep = json.load(open(os.path.join(a.freeze_known_text, "tokenizer.json")))["model"]["vocab"]
            if any(tok.vocab.get(t) != i for t, i in keep.items()):
                raise SystemExit(f"--freeze-known-text {a.freeze_known_text}: its tokens are not the first ones of this run's tokenizer, at the same ids")
        if not keep:
            raise SystemExit("--freeze-known-text needs --init weights with a tokenizer.json beside them")
        for k, p in model.named_parameters():
            if k.startswith("text.") and k != "text.tok.weight":
                p.requires_grad_(False)
        # AdamW's decay and moments would still move rows with zero gradient: they are put back after each step
        known_rows = model.text.tok.weight.detach()[: len(keep)].clone()
        print(f"text encoder frozen but for the {len(tok.vocab) - len(keep)} new tokens' embeddings", flush=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=1e-4)
    if resume:
        opt.load_state_dict(resume["opt"])
        step, best = resume["step"], resume.get("best", -1.0)
        print(f"resumed at step {step}", flush=True)
    rng = random.Random(a.seed * 100003 + step)
    g = torch.Generator().manual_seed(a.seed + step)
    torch.manual_seed(a.seed + step)
    boost = {kv.split("=")[0]: float(kv.split("=")[1]) for kv in a.boost.split(",") if kv}
    mirror = [x for x in a.mirror.split(",") if x]
    unknown = sorted(set(mirror) - {d.id for d in datasets})
    if unknown:
        raise SystemExit(f"--mirror: no dataset {', '.join(unknown)}")
    if a.workers:
        seed0 = a.seed * 100003 + step
        stream = BatchStream(lambda w: Batcher(datasets, vocab, tok, random.Random(seed0 + 7919 * (w + 1)), a.batch, a.k, a.zoom, a.upscale, boost, a.upscale_p, a.native_p, a.small_weight, mirror))
        batches = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=a.workers, pin_memory=dev.type == "cuda", prefetch_factor=4, persistent_workers=True))
    else:
        batcher = Batcher(datasets, vocab, tok, rng, a.batch, a.k, a.zoom, a.upscale, boost, a.upscale_p, a.native_p, a.small_weight, mirror)
        batches = iter(batcher.next, None)
    warm = 200
    snap_at = sorted(float(f) for f in a.snapshots.split(",") if f) if a.snapshot_dir else []
    if snap_at:
        os.makedirs(a.snapshot_dir, exist_ok=True)

    def progress(s):
        """Fraction of the run done: by steps, or by wall time under --minutes."""
        if a.minutes:
            return min(1.0, (time.time() - t_start) / (a.minutes * 60))
        return min(1.0, s / max(1, a.steps))

    def lr_at(s):
        if s < warm:
            return a.lr * (s + 1) / warm
        if a.minutes:
            f = progress(s)
        else:
            f = min(1.0, (s - warm) / max(1, a.steps - warm))
        return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * f)))

    def save(path, val=None):
        # a save right after validation keeps its result, so `export.py --ckpt last` can record it
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step, best=best, vocab_size=len(tok.vocab), arch=model.arch, val=val), path + ".tmp")
        os.replace(path + ".tmp", path)

    def stored(v):
        """A snapshot's copy of a tensor: float16 under --snapshot-half (floating-point tensors only)."""
        return v.half() if a.snapshot_half and v.is_floating_point() else v

    def snapshots():
        while snap_at and progress(step) >= snap_at[0]:
            f = snap_at.pop(0)
            torch.save(dict(model={kk: stored(v.cpu()) for kk, v in model.state_dict().items()}, step=step, vocab_size=len(tok.vocab), arch=model.arch, fraction=f),
                       os.path.join(a.snapshot_dir, f"snapshot-{round(f * 100):03d}.pt"))
            print(f"snapshot at {f:.2f} of the run, step {step}", flush=True)

    def set_train():
        model.train()
        if train_only or a.bn_frozen:  # frozen parts keep their BatchNorm statistics
            for k, mod in model.named_modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and (a.bn_frozen or not k.startswith(train_only)):
                    mod.eval()

    set_train()
    t_start, s_start = time.time(), step
    agg = {}
    while step < (a.bench or a.steps) and not (a.minutes and progress(step) >= 1.0):
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        x, y, ids, m, slugs, present, flip_ok = next(batches)
        x, y = normalise(x.to(dev, non_blocking=True)), y.to(dev, non_blocking=True).float()
        ids, m, present = ids.to(dev), m.to(dev), present.to(dev)
        x, y = augment(x, y, flip_ok, g, a.elastic, a.elastic_px, a.transpose, a.colour, a.degrade, a.hflip, a.vflip)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp):
            loss, parts = losses(model, x, y, ids, m, slugs, present, a.k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        if known_rows is not None:
            with torch.no_grad():
                model.text.tok.weight[: len(known_rows)] = known_rows
        step += 1
        for kk, v in parts.items():
            agg[kk] = agg.get(kk, 0.0) + v
        snapshots()
        if step % a.log_every == 0:
            el = time.time() - t_start
            rate = (step - s_start) / el
            eta = a.minutes * 60 - el if a.minutes else (a.steps - step) / max(rate, 1e-9)
            print(f"step {step}/{a.steps} " + " ".join(f"{kk}={v / a.log_every:.3f}" for kk, v in agg.items()) +
                  f" lr={lr_at(step):.2e} {rate * a.batch:.1f} img/s ETA {eta / 60:.1f} min", flush=True)
            agg = {}
        if a.bench:
            continue
        if step % a.ckpt_every == 0:
            save(ck)
        if a.val_every and (step % a.val_every == 0 or step == a.steps):
            model.eval()
            with torch.no_grad():
                res = ev.validate(model, datasets, vocab, tok, split="val", max_cases=40)
            set_train()
            score = res["score"]
            print("val " + json.dumps(res), flush=True)
            if score > best:
                best = score
                torch.save(dict(model=model.state_dict(), step=step, vocab_size=len(tok.vocab), arch=model.arch, val=res), os.path.join(state_dir, "best.pt"))
                print(f"new best {best:.4f} at step {step}", flush=True)
            save(ck, res)
    if not a.bench:
        snapshots()
        save(ck)
    if a.bench:
        el = time.time() - t_start
        print(f"bench: {a.bench} steps in {el:.1f}s = {a.bench * a.batch / el:.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
