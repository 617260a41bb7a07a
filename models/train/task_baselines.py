"""Task-specific baselines for "the generalist against task-specific networks, per dataset": one
recipe that trains a plain U-Net (unet_specialist.UNet) per dataset of ../shared/data/medseg2d on
that dataset's `train` split alone, keeps the checkpoint that scores best on `val`, and exports it
to ONNX with a meta.json, so that the TypeScript evaluator can run it on the `test` split beside
the generalist. Test cases are never read here.

    python3 models/train/task_baselines.py --dataset ph2_dermoscopy            # -> runs/baselines/ph2_dermoscopy/
    python3 models/train/task_baselines.py --all [--device cuda]               # every dataset of index.json
    python3 models/train/task_baselines.py --dataset ph2_dermoscopy --export-only
    (models/train/baselines.sh runs --all, resumably)

Recipe (the same for every dataset; only K and the two rules below depend on the dataset):
  - network: UNet(base=16, outputs=K): two 3x3 conv + BatchNorm + ReLU per scale, 5 scales
    (16..256 channels), K sigmoid outputs, one per structure in dataset.json order; from scratch.
  - input: tiled datasets (thin structures: drive_fundus, isbi2012_em, monuseg_nuclei_histology)
    train on random 256 px crops of the native image (longer side brought down to 512 when above,
    as data._load_case does) and are validated and served tiled: 256 px tiles, stride 192, logits
    averaged where tiles overlap (evaluate.tile_average); every other dataset is letterboxed whole
    to 256 (data.letterbox: longer side resized bilinearly, centred, zero padding).
  - augmentation: train.augment with its defaults (random affine: rotation +-12 deg, scale
    1/1.25..1.25, shift +-10 %; intensity: gamma, contrast, brightness), elastic deformation with
    probability 0.5 (5x5 grid, 6 px), no axis swaps, no colour or degradation jitter. Flips
    (horizontal p 0.5, vertical p 0.3) are allowed unless a structure slug contains "left" or
    "right" (a flip would swap the sides; this also rules out la2018_left_atrium_lge_mri) or the
    dataset is a chest X-ray (jsrt_scr_cxr, gb_covid_cxr) or cardiac (acdc_cardiac_mri), whose
    anatomy is not mirror-symmetric.
  - optimisation: float32 (tensors held channels-last), or with --bf16 the forward pass under bfloat16
    autocast (weights, loss, optimiser and validation in float32; meta.json's train.precision says
    which), batch 8, loss = BCE + soft Dice (per sample and channel, smoothing 1, averaged),
    AdamW lr 2e-3, weight decay 1e-4, cosine schedule to 0 over --steps (default 3000), seed 0.
  - selection: every 250 steps (and at the last) on all `val` cases: per-case Dice at p >= 0.5
    (logit >= 0), an empty prediction on an empty ground truth counting 1 (evaluate.dice),
    averaged over cases per structure, then over structures; best.pt keeps the best (ties: the
    earlier); last.pt is written every 100 steps with the optimiser and RNG state, and a rerun
    with the same --out resumes from it.
  - export (from best.pt): model.onnx (opset 14) and meta.json in <out>/<dataset>/, described below.

ONNX interface: input `pixels` float32 [1,3,256,256], the RAW 0..255 RGB values of the letterboxed
image (or of one 256 px tile of the native image, zero-padded to 256 where the image is smaller);
the graph normalises them itself exactly as evaluate.norm does ((x / 255 - 0.5) / 0.25). Output
`logits` float32 [1,K,256,256], one channel per structure of meta.json's `structures`;
probability = sigmoid(logit), the mask is p >= 0.5.

meta.json: {"format": "promptseg-task-net/1", "dataset", "structures": [slugs], "input_size": 256,
"tiled": bool, "tile": {"size": 256, "stride": 192, "native_max_side": 512}, "arch": {"unet_base":
16, "params": N}, "train": {"cases", "steps", "batch", "lr", "elastic", "seed", "flips"},
"checkpoint_step", "val_dice": {slug: x, ..., "mean": y}, "onnx_sha256", "command" (the command
line that started the training), "export_check" (the parity check's runtime and max |difference|)}.

Data: read in place from --data (dataset.json for the structure slugs, splits.json, images/,
masks/<slug>/) with data._load_case in a Pool, cached (train and val cases only) in
models/.cache/task-<dataset>.npz; or, where a dataset folder holds pack.py's pack.npz (for a GPU
machine: `pack.py --splits train,val --out models/.pack-tv`, then --data models/.pack-tv), from it.
"""
import argparse, json, os, shlex, shutil, subprocess, sys, tempfile, time, warnings
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import NATIVE_MAX, SIZE, _load_case, _unpack_case  # noqa: E402
from train import ROOT, augment  # noqa: E402
from unet_specialist import UNet, add_recipe_args, train_step  # noqa: E402
import evaluate as ev  # noqa: E402

FORMAT = "promptseg-task-net/1"
OPSET = 14
TILED = {"drive_fundus", "isbi2012_em", "monuseg_nuclei_histology"}
NO_FLIP = {"jsrt_scr_cxr", "gb_covid_cxr", "acdc_cardiac_mri"}
SPLITS = ("train", "val")
ELASTIC_PX = 6.0


def flips_allowed(ds_id, slugs):
    return ds_id not in NO_FLIP and not any("left" in s or "right" in s for s in slugs)


class TaskData:
    """One dataset's train and val cases: letterboxed images [N,S,S,3] uint8 and masks [N,K,S,S]
    bool, or (tiled datasets) native images and masks in `native` [(img [H,W,3], masks [K,H,W])]."""

    def __init__(self, root, ds_id, cache_dir, workers=2):
        meta = json.load(open(os.path.join(root, ds_id, "dataset.json")))
        splits = json.load(open(os.path.join(root, ds_id, "splits.json")))
        self.id, self.tiled = ds_id, ds_id in TILED
        self.slugs = [s["slug"] for s in meta["structures"]]
        self.cases = [c for s in SPLITS for c in splits[s]]
        at = {c: i for i, c in enumerate(self.cases)}
        self.split = {s: [at[c] for c in splits[s]] for s in SPLITS}
        packed = os.path.join(root, ds_id, "pack.npz")
        if os.path.exists(packed):
            self._take(self._unpack(packed, workers))
            return
        path = os.path.join(cache_dir, f"task-{ds_id}.npz")
        if os.path.exists(path):
            z = np.load(path)
            if [str(c) for c in z["cases"]] == self.cases and [str(s) for s in z["slugs"]] == self.slugs:
                self._take(z)
                return
        ext = {os.path.splitext(f)[0]: os.path.splitext(f)[1] for f in os.listdir(os.path.join(root, ds_id, "images"))}
        missing = [c for c in self.cases if c not in ext]
        if missing:
            raise SystemExit(f"{ds_id}: no image for {len(missing)} split cases, e.g. {missing[:3]}")
        jobs = [(root, ds_id, c, ext[c], self.slugs, self.tiled) for c in self.cases]
        with Pool(workers) as pool:
            res = pool.map(_load_case, jobs, chunksize=8)
        arrays = {"cases": np.array(self.cases), "slugs": np.array(self.slugs)}
        if self.tiled:
            for i, r in enumerate(res):
                arrays[f"img{i}"], arrays[f"mask{i}"] = r[2]
        else:
            arrays["images"] = np.stack([r[0] for r in res])
            arrays["masks"] = np.stack([r[1] for r in res])
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        self._take(arrays)

    def _unpack(self, path, workers):
        """pack.py's bundle (train and val cases) -> the arrays the cache holds."""
        z = np.load(path, allow_pickle=True)
        at = {str(c): i for i, c in enumerate(z["cases"])}
        missing = [c for c in self.cases if c not in at]
        if missing:
            raise SystemExit(f"{path} lacks {len(missing)} train/val cases, e.g. {missing[:3]}: pack with --splits train,val")
        k = len(self.slugs)
        imgs, masks = (z["native_images"], z["native_masks"]) if self.tiled else (z["images"], z["masks"])
        with Pool(workers) as pool:
            res = pool.map(_unpack_case, [(imgs[at[c]], masks[at[c]], k) for c in self.cases], chunksize=16)
        if self.tiled:
            return {**{f"img{i}": r[0] for i, r in enumerate(res)}, **{f"mask{i}": r[1] for i, r in enumerate(res)}}
        return {"images": np.stack([r[0] for r in res]), "masks": np.stack([r[1] for r in res])}

    def _take(self, z):
        if self.tiled:
            self.native = [(z[f"img{i}"], z[f"mask{i}"]) for i in range(len(self.cases))]
        else:
            self.images, self.masks = z["images"], z["masks"]

    def view(self, i):
        """Case i as the network sees it: (image [H,W,3] uint8, masks [K,H,W] bool)."""
        return self.native[i] if self.tiled else (self.images[i], self.masks[i])


def crops(d, idx, n, g):
    """n random cases of idx: a random SIZE px crop of the native image (tiled datasets, zero-padded
    to SIZE where smaller) or the whole letterboxed image -> x [n,3,S,S] normalised, y [n,K,S,S]."""
    xs, ys = [], []
    for _ in range(n):
        img, masks = d.view(idx[int(torch.randint(len(idx), (1,), generator=g))])
        h, w = img.shape[:2]
        if h < SIZE or w < SIZE:
            ph, pw = max(SIZE - h, 0), max(SIZE - w, 0)
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            masks = np.pad(masks, ((0, 0), (0, ph), (0, pw)))
            h, w = img.shape[:2]
        y0 = int(torch.randint(h - SIZE + 1, (1,), generator=g))
        x0 = int(torch.randint(w - SIZE + 1, (1,), generator=g))
        xs.append(ev.norm(img[y0:y0 + SIZE, x0:x0 + SIZE]))
        ys.append(torch.from_numpy(masks[:, y0:y0 + SIZE, x0:x0 + SIZE].astype(np.float32))[None])
    return torch.cat(xs), torch.cat(ys)


def predict(model, d, i, dev):
    """Logits [K,H,W] of case i (CPU): tiled at native scale, or of the letterboxed image."""
    img, _ = d.view(i)
    if d.tiled:
        return ev.tile_average(img, lambda t: (model(t.to(dev))[0].float().cpu(), None))[0]
    return model(ev.norm(img).to(dev))[0].float().cpu()


def validate(model, d, dev, batch=16):
    """Per structure: the mean over val cases of Dice at p >= 0.5 (empty on empty = 1); and "mean"
    over structures."""
    was = model.training
    model.eval()
    per = [[] for _ in d.slugs]
    idx = d.split["val"]
    with torch.no_grad():
        if d.tiled:
            outs = [(predict(model, d, i, dev), d.native[i][1]) for i in idx]
        else:
            outs = []
            for b in range(0, len(idx), batch):
                ii = idx[b:b + batch]
                x = torch.cat([ev.norm(d.images[i]) for i in ii]).to(dev)
                lg = model(x).float().cpu()
                outs += [(lg[j], d.masks[i]) for j, i in enumerate(ii)]
        for lg, gt in outs:
            pm = (lg >= 0).numpy()
            for k in range(len(d.slugs)):
                per[k].append(float(ev.dice(pm[k], gt[k])))
    model.train(was)
    res = {s: round(float(np.mean(v)), 4) for s, v in zip(d.slugs, per)}
    res["mean"] = round(float(np.mean([np.mean(v) for v in per])), 4)
    return res


class RawPixels(nn.Module):
    """The exported graph: raw 0..255 RGB [1,3,S,S] -> evaluate.norm's arithmetic -> U-Net logits."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixels):
        return self.net((pixels / 255.0 - ev.MEAN) / ev.STD)


def save(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


class Log:
    def __init__(self, path):
        self.path = path

    def __call__(self, msg):
        print(msg, flush=True)
        with open(self.path, "a") as f:
            f.write(msg + "\n")


def train(a, d, out, log):
    """Trains (or resumes) the dataset's U-Net into out/ until a.steps; returns nothing."""
    dev = torch.device(a.device)
    K = len(d.slugs)
    torch.manual_seed(a.seed)
    # channels-last is a memory layout only (the same fp32 arithmetic); convolutions run about 1.5x faster on CPU
    model = UNet(a.base, outputs=K).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    last, best_path = os.path.join(out, "last.pt"), os.path.join(out, "best.pt")
    step, history, best = 0, [], None
    command = shlex.join([sys.executable] + sys.argv)
    if os.path.exists(last):
        ck = torch.load(last, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        step, history, best, command = ck["step"], ck["log"], ck["best"], ck["command"]
        if ck["args"].get("bf16", False) != a.bf16:
            raise SystemExit(f"{last} was started {'with' if ck['args'].get('bf16') else 'without'} --bf16; resume it the same way")
        if ck["args"]["steps"] != a.steps:
            log(f"note: last.pt was started with --steps {ck['args']['steps']}; continuing with --steps {a.steps}")
        log(f"resumed at step {step} (best val {best and best['val_dice']['mean']})")
    idx = d.split["train"]
    flips = flips_allowed(d.id, d.slugs)
    log(f"{d.id}: {len(idx)} train / {len(d.split['val'])} val cases, structures {d.slugs}, "
        f"{'tiled' if d.tiled else 'letterboxed'}, flips {'on' if flips else 'off'}, device {dev}, "
        f"{sum(p.numel() for p in model.parameters())} parameters")
    flip_ok = torch.full((a.batch,), flips)
    args = {k: getattr(a, k) for k in ("steps", "batch", "lr", "base", "elastic", "seed", "val_every", "bf16")}

    def state():
        return {"model": model.state_dict(), "step": step, "args": args, "command": command,
                "slugs": d.slugs, "dataset": d.id, "train_cases": len(idx), "flips": flips}

    t0, s0 = time.time(), step
    model.train()
    while step < a.steps:
        x, y = crops(d, idx, a.batch, g)
        x, y = augment(x.to(dev), y.to(dev), flip_ok, g, a.elastic, ELASTIC_PX)
        x = x.contiguous(memory_format=torch.channels_last)
        loss, lr = train_step(model, opt, x, y, a.lr, step, a.steps, bf16=a.bf16)
        step += 1
        if step % 20 == 0 or step == a.steps:
            el = time.time() - t0
            rate = (step - s0) * a.batch / el
            log(f"step {step}/{a.steps} loss {loss.item():.4f} lr {lr:.2e} {rate:.1f} img/s "
                f"{el / (step - s0):.3f} s/step ETA {(a.steps - step) * a.batch / rate / 60:.1f} min")
        if step % a.val_every == 0 or step == a.steps:
            tv = time.time()
            v = validate(model, d, dev)
            history.append({"step": step, "val_dice": v})
            better = best is None or v["mean"] > best["val_dice"]["mean"]
            if better:
                best = {"step": step, "val_dice": v}
                save(dict(state(), val_dice=v), best_path)
            log(f"step {step} val Dice {v}{' best' if better else ''} ({time.time() - tv:.1f} s)")
        if step % 100 == 0 or step == a.steps:
            save(dict(state(), opt=opt.state_dict(), rng=g.get_state(), torch_rng=torch.get_rng_state(),
                      log=history, best=best), last)
    log(f"trained: {step} steps, best val {best and best['val_dice']} at step {best and best['step']}")


def onnx_runtime_logits(path, raw):
    """Runs the exported graph on raw [1,3,S,S]: python onnxruntime if importable, else
    onnxruntime-node from the repository's node_modules; -> (runtime name, logits) or (reason, None)."""
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return "onnxruntime (python)", torch.from_numpy(sess.run(["logits"], {"pixels": raw.numpy()})[0])
    except ImportError:
        pass
    if not shutil.which("node") or not os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")):
        return "skipped: neither python onnxruntime nor node + onnxruntime-node here", None
    script = ("const ort=require('onnxruntime-node'),fs=require('fs');const [m,i,o]=process.argv.slice(1);"
              "(async()=>{const b=fs.readFileSync(i);const x=new Float32Array(b.buffer.slice(b.byteOffset,b.byteOffset+b.byteLength));"
              f"const s=await ort.InferenceSession.create(m);const r=await s.run({{pixels:new ort.Tensor('float32',x,[1,3,{raw.shape[2]},{raw.shape[3]}])}});"
              "const d=r.logits.data;fs.writeFileSync(o,Buffer.from(d.buffer,d.byteOffset,d.byteLength));"
              "console.log(JSON.stringify(r.logits.dims))})().catch(e=>{console.error(e);process.exit(1)})")
    with tempfile.TemporaryDirectory() as tmp:
        i, o = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")
        raw.numpy().astype(np.float32).tofile(i)
        r = subprocess.run(["node", "-e", script, path, i, o], cwd=ROOT, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise SystemExit(f"onnxruntime-node failed on {path}: {r.stderr[-2000:]}")
        dims = json.loads(r.stdout.strip().splitlines()[-1])
        return "onnxruntime-node", torch.from_numpy(np.fromfile(o, dtype=np.float32).reshape(dims))


def export(a, d, out, log):
    """best.pt -> out/model.onnx + out/meta.json, checked against the checkpoint on one val case.
    model.onnx is moved into place last: its presence means the dataset is done (--all skips it)."""
    import onnx
    from export import sha256
    ck = torch.load(os.path.join(out, "best.pt"), map_location="cpu")
    if ck["slugs"] != d.slugs:
        raise SystemExit(f"{out}/best.pt was trained for {ck['slugs']}, the dataset has {d.slugs}")
    K = len(d.slugs)
    model = UNet(ck["args"]["base"], outputs=K)
    model.load_state_dict(ck["model"])
    model.eval()
    wrapped = RawPixels(model).eval()
    tmp = os.path.join(out, "model.onnx.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")
        torch.onnx.export(wrapped, (torch.zeros(1, 3, SIZE, SIZE),), tmp, input_names=["pixels"],
                          output_names=["logits"], opset_version=OPSET, do_constant_folding=True)
    m = onnx.load(tmp)
    onnx.checker.check_model(m)
    shape = lambda v: [x.dim_value for x in v.type.tensor_type.shape.dim]
    io = ([(v.name, shape(v)) for v in m.graph.input], [(v.name, shape(v)) for v in m.graph.output])
    want = ([("pixels", [1, 3, SIZE, SIZE])], [("logits", [1, K, SIZE, SIZE])])
    if io != want:
        raise SystemExit(f"exported graph has inputs/outputs {io}, expected {want}")
    # parity on one val case (its letterboxed image, or the first tile of the native image)
    img, _ = d.view(d.split["val"][0])
    tile = np.pad(img, ((0, max(SIZE - img.shape[0], 0)), (0, max(SIZE - img.shape[1], 0)), (0, 0)))[:SIZE, :SIZE]
    raw = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        ref = model(ev.norm(tile))
        torch_diff = float((wrapped(raw) - ref).abs().max())
    runtime, got = onnx_runtime_logits(tmp, raw)
    check = {"case": d.cases[d.split["val"][0]], "torch_wrapper_max_abs_diff": torch_diff, "runtime": runtime}
    if got is not None:
        check["max_abs_diff"] = float((got - ref).abs().max())
        check["mask_agreement"] = float(((got >= 0) == (ref >= 0)).float().mean())
    log(f"export check: {check}")
    if torch_diff > 1e-4 or check.get("max_abs_diff", 0) > 1e-3:
        raise SystemExit(f"{tmp}: the exported graph differs from the checkpoint: {check}")
    meta = {
        "format": FORMAT, "dataset": d.id, "structures": d.slugs, "input_size": SIZE, "tiled": d.tiled,
        "tile": {"size": SIZE, "stride": ev.TILE_STRIDE, "native_max_side": NATIVE_MAX},
        "arch": {"unet_base": ck["args"]["base"], "params": sum(p.numel() for p in model.parameters())},
        "train": {"cases": ck["train_cases"], "steps": ck["args"]["steps"], "batch": ck["args"]["batch"],
                  "lr": ck["args"]["lr"], "elastic": ck["args"]["elastic"], "seed": ck["args"]["seed"], "flips": ck["flips"],
                  "precision": "bfloat16 autocast" if ck["args"].get("bf16") else "float32"},
        "checkpoint_step": ck["step"], "val_dice": ck["val_dice"], "onnx_sha256": sha256(tmp),
        "command": ck["command"], "export_check": check,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "model.onnx"))
    log(f"exported {out}/model.onnx ({os.path.getsize(os.path.join(out, 'model.onnx'))} bytes), step {ck['step']}, val {ck['val_dice']}")


def run_one(a, ds_id):
    out = os.path.join(a.out, ds_id)
    os.makedirs(out, exist_ok=True)
    log = Log(os.path.join(out, "train.log"))
    t = time.time()
    d = TaskData(a.data, ds_id, a.cache, a.workers)
    log(f"{ds_id}: data ready in {time.time() - t:.1f} s")
    if not a.export_only:
        train(a, d, out, log)
    elif not os.path.exists(os.path.join(out, "best.pt")):
        raise SystemExit(f"--export-only: {out}/best.pt does not exist")
    export(a, d, out, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", help="one dataset id of --data")
    which.add_argument("--all", action="store_true", help="every dataset of index.json, skipping those whose model.onnx exists")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "baselines"), help="each dataset goes to OUT/<dataset>/")
    add_recipe_args(ap, steps=3000, elastic=0.5, val_every=250)
    ap.add_argument("--workers", type=int, default=2, help="processes that read the images the first time (then cached)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--export-only", action="store_true", help="only export OUT/<dataset>/best.pt")
    ap.add_argument("--bf16", action="store_true", help="forward pass under bfloat16 autocast (about 1.7x faster on a CPU with AMX; weights and loss in float32)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device")
        torch.backends.cudnn.benchmark = True
    if a.dataset:
        if not os.path.exists(os.path.join(a.data, a.dataset, "dataset.json")):
            raise SystemExit(f"--dataset: no dataset {a.dataset} in {a.data}")
        run_one(a, a.dataset)
        return
    ids = [x["id"] for x in json.load(open(os.path.join(a.data, "index.json")))]
    for ds_id in ids:
        out = os.path.join(a.out, ds_id)
        if os.path.exists(os.path.join(out, "model.onnx")):
            print(f"{ds_id}: {out}/model.onnx exists, skipped", flush=True)
            continue
        if a.export_only and not os.path.exists(os.path.join(out, "best.pt")):
            print(f"{ds_id}: no best.pt, skipped", flush=True)
            continue
        run_one(a, ds_id)


if __name__ == "__main__":
    main()
