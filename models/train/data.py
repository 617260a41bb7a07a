"""Reads ../shared/data/medseg2d in place, letterboxes every case once into a cache of arrays,
and samples training batches of (image, prompt, target) with absent-structure and nonsense
negatives. Splits come from each dataset's splits.json, used as they are."""
import io, json, os, random
from multiprocessing import Pool

import numpy as np
from PIL import Image

SIZE = 256
NATIVE_MAX = 512


def letterbox_geometry(h, w, size=SIZE):
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return nh, nw, (size - nh) // 2, (size - nw) // 2


def letterbox(img, size=SIZE, resample=Image.BILINEAR):
    """PIL image -> array [size,size,(3)] with the resized image centred, zero padding."""
    w, h = img.size
    nh, nw, top, left = letterbox_geometry(h, w, size)
    r = np.asarray(img.resize((nw, nh), resample))
    out = np.zeros((size, size) + r.shape[2:], dtype=np.uint8)
    out[top:top + nh, left:left + nw] = r
    return out


def load_rgb(path):
    return Image.open(path).convert("RGB")


def _load_case(args):
    root, ds, case, ext, slugs, tiled = args
    img = load_rgb(os.path.join(root, ds, "images", case + ext))
    masks = [Image.open(os.path.join(root, ds, "masks", s, case + ".png")).convert("L") for s in slugs]
    whole = letterbox(img)
    wm = [(letterbox(m) > 127) for m in masks]
    native = None
    if tiled:
        w, h = img.size
        if max(w, h) > NATIVE_MAX:
            s = NATIVE_MAX / max(w, h)
            img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
            masks = [m.resize(img.size, Image.BILINEAR) for m in masks]
        native = (np.asarray(img), np.stack([np.asarray(m) > 127 for m in masks]))
    return whole, np.stack(wm), native


def _unpack_case(args):
    """pack.py's coding back to arrays: image -> [H,W,3] uint8, bit-coded masks -> [k,H,W] bool."""
    img_b, mask_b, k = args
    img = np.asarray(Image.open(io.BytesIO(img_b)).convert("RGB"))
    bits = np.asarray(Image.open(io.BytesIO(mask_b)))
    return img, np.stack([(bits >> j) & 1 for j in range(k)]).astype(bool)


class Dataset:
    def __init__(self, root, ds_id, vocab, cache_dir):
        meta = json.load(open(os.path.join(root, ds_id, "dataset.json")))
        self.splits = json.load(open(os.path.join(root, ds_id, "splits.json")))
        self.id = ds_id
        self.slugs = [s["slug"] for s in meta["structures"]]
        vs = {s["slug"]: s for s in vocab["structures"]}
        self.tiled = any(vs[s]["scale"] == "tiled" for s in self.slugs)
        self.region = next(d["region"] for d in vocab["datasets"] if d["id"] == ds_id)
        self.modality_words = next(d["modality_words"] for d in vocab["datasets"] if d["id"] == ds_id)
        packed = os.path.join(root, ds_id, "pack.npz")
        if os.path.exists(packed):  # a bundle made by pack.py (train cases only, no image folder)
            self._load_pack(packed)
            return
        images = sorted(os.listdir(os.path.join(root, ds_id, "images")))
        self.ext = {os.path.splitext(f)[0]: os.path.splitext(f)[1] for f in images}
        self.cases = sorted(self.ext)
        self.index = {c: i for i, c in enumerate(self.cases)}
        path = os.path.join(cache_dir, ds_id + ".npz")
        if os.path.exists(path):
            z = np.load(path, allow_pickle=True)
            self.images, self.masks = z["images"], z["masks"]
            self.native = list(z["native"]) if self.tiled else None
        else:
            jobs = [(root, ds_id, c, self.ext[c], self.slugs, self.tiled) for c in self.cases]
            with Pool(2) as pool:
                res = pool.map(_load_case, jobs, chunksize=8)
            self.images = np.stack([r[0] for r in res])
            self.masks = np.stack([r[1] for r in res])
            self.native = [r[2] for r in res] if self.tiled else None
            nat = np.empty(len(res), dtype=object)
            if self.tiled:
                for i, r in enumerate(res):
                    nat[i] = r[2]
            np.savez(path, images=self.images, masks=self.masks, native=nat)
        self.present = self.masks.reshape(len(self.cases), len(self.slugs), -1).any(-1)

    def _load_pack(self, path):
        z = np.load(path, allow_pickle=True)
        self.cases = [str(c) for c in z["cases"]]
        self.index = {c: i for i, c in enumerate(self.cases)}
        k = len(self.slugs)
        if self.tiled:
            jobs = [(b, m, k) for b, m in zip(z["native_images"], z["native_masks"])]
        else:
            jobs = [(b, m, k) for b, m in zip(z["images"], z["masks"])]
        with Pool(min(16, os.cpu_count() or 2)) as pool:
            res = pool.map(_unpack_case, jobs, chunksize=16)
        if self.tiled:  # the whole-image view is letterboxed from the native one
            self.native = res
            self.images = np.stack([letterbox(Image.fromarray(img)) for img, _ in res])
            self.masks = np.stack([np.stack([letterbox(Image.fromarray(m.astype(np.uint8) * 255)) > 127 for m in ms]) for _, ms in res])
        else:
            self.native = None
            self.images = np.stack([r[0] for r in res])
            self.masks = np.stack([r[1] for r in res])
        self.present = self.masks.reshape(len(self.cases), k, -1).any(-1)

    def split_idx(self, split):
        return [self.index[c] for c in self.splits[split] if c in self.index]


DEFAULT_VOCABULARY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "prompts", "vocabulary.json")


def load_vocabulary(path=None):
    """The structure vocabulary (make_vocabulary.py's output): prompts/vocabulary.json unless given."""
    return json.load(open(path or DEFAULT_VOCABULARY))


def negative_slugs(vocab, ds_id):
    """Structures a dataset's images can be asked for as absent: those of other body regions, less
    the ones its images may show unlabelled (`may_show`) and those found in almost any tissue
    (`never_negative`: vessels, nerves)."""
    d = next(x for x in vocab["datasets"] if x["id"] == ds_id)
    shown = set(d.get("may_show", []))
    return [s["slug"] for s in vocab["structures"]
            if s["region"] != d["region"] and s["slug"] not in shown and not s.get("never_negative")]


def load_all(root, vocab, cache_dir):
    os.makedirs(cache_dir, exist_ok=True)
    out = []
    for d in vocab["datasets"]:
        out.append(Dataset(root, d["id"], vocab, cache_dir))
    return out


def random_string(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(rng.randint(1, 3)))


class PromptSampler:
    """Phrases a structure with a training template and synonym; makes nonsense prompts."""

    def __init__(self, vocab, rng):
        self.rng = rng
        self.by_slug = {s["slug"]: s for s in vocab["structures"]}
        self.templates = vocab["templates"]["train"]
        self.nonsense = vocab["nonsense"]["train"]

    def phrase(self, slug, modality_words):
        s = self.by_slug[slug]
        name = self.rng.choice([s["name"], s["name"]] + s["synonyms"] + [slug.replace("_", " ")])
        t = self.rng.choice(self.templates)
        text = t.format(s=name, m=self.rng.choice(modality_words))
        if self.rng.random() < 0.15:  # unknown filler words: the structure words must carry the meaning
            words = text.split()
            words.insert(self.rng.randint(0, len(words)), random_string(self.rng).split()[0])
            text = " ".join(words)
        if self.rng.random() < 0.3:
            text = text.upper() if self.rng.random() < 0.2 else text.capitalize()
        return text

    def nonsense_prompt(self):
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(self.nonsense)
        if r < 0.8:
            return random_string(self.rng)
        return self.rng.choice(self.templates).format(s=random_string(self.rng), m="image")
