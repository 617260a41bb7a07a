"""Exports a checkpoint to the three ONNX graphs the service runs, writes a parity fixture
(PyTorch outputs on a deterministic input) that `npm test` compares with onnxruntime-node, and
updates the model's entry in the manifest beside the model folder (files, sha256, sizes), and
saves the checkpoint's weights alone as weights.pt in that folder.

    python3 models/train/export.py [--ckpt best|last|PATH.pt]

A specialist (an image encoder and mask decoder fine-tuned with `train.py --train-only
image.,decoder.` from the shipped weights, so its text encoder is the shipped one) is exported
beside the model's own graphs, which stay as they are:

    python3 models/train/export.py --ckpt PATH.pt --specialist NAME --structures slug[,slug]
writes image_encoder.NAME.onnx and mask_decoder.NAME.onnx, its parity outputs under
parity.json's "specialists", and its entry in the manifest's `specialists`. With --own-presence the
specialist answers for its structures altogether (presence, quality, similarity and mask): how a
network trained on more datasets serves the structures the model's own decoder never learned. A checkpoint of
`unet_specialist.py` (a text-independent U-Net for one structure) is exported the same way: its encoder
outputs the mask logits as f0, its decoder hands them to every prompt.
"""
import argparse, hashlib, json, math, os, sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import EMBED, FEATURES, from_checkpoint  # noqa: E402
from tokenizer import WordPiece  # noqa: E402
from data import SIZE  # noqa: E402
from evaluate import token_batch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPSET = 14
FEATS = list(FEATURES)
POOLED = len(FEATS)  # index of the pooled embedding in the encoder outputs


class TextExport(nn.Module):
    """The text encoder with attention written out, so export does not depend on the
    TransformerEncoder fast path; same weights, same arithmetic."""

    def __init__(self, text):
        super().__init__()
        self.t = text

    def forward(self, input_ids, attention_mask):
        t = self.t
        L = input_ids.shape[1]
        x = t.tok(input_ids) + t.pos[:, :L]
        neg = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * -1e9
        for layer in t.tf.layers:
            a = layer.self_attn
            d = x.shape[-1]
            h = a.num_heads
            qkv = nn.functional.linear(x, a.in_proj_weight, a.in_proj_bias)
            q, k, v = qkv.split(d, dim=-1)
            sh = lambda z: z.reshape(z.shape[0], z.shape[1], h, d // h).transpose(1, 2)
            q, k, v = sh(q), sh(k), sh(v)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h) + neg, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], d)
            o = a.out_proj(o)
            x = layer.norm1(x + o)
            x = layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        x = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return nn.functional.normalize(t.proj(x), dim=-1)


class DecoderExport(nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.d = dec

    def forward(self, f0, f1, f2, f3, f4, f5, embed_map, text_embeds):
        n = text_embeds.shape[0]
        rep = [f.expand(n, -1, -1, -1) for f in (f0, f1, f2, f3, f4, f5, embed_map)]
        return self.d(*rep, text_embeds)


class ImageExport(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.e = enc

    def forward(self, pixel_values):
        return self.e(pixel_values)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_image_and_decoder(ie, de, img, feats, emb, image_path, decoder_path):
    """The image encoder and mask decoder graphs, with the input/output names the runner reads."""
    torch.onnx.export(ie, (img,), image_path, opset_version=OPSET,
                      input_names=["pixel_values"], output_names=FEATS + ["pooled"],
                      dynamic_axes={"pixel_values": {0: "b"}, **{k: {0: "b"} for k in FEATS + ["pooled"]}})
    torch.onnx.export(de, tuple(feats[:POOLED]) + (emb,), decoder_path, opset_version=OPSET,
                      input_names=FEATS + ["text_embeds"], output_names=["mask_logits", "presence_logit", "iou_logit", "similarity"],
                      dynamic_axes={"text_embeds": {0: "n"}, "mask_logits": {0: "n"}, "presence_logit": {0: "n"}, "iou_logit": {0: "n"}, "similarity": {0: "n"}})


def specialists_to_keep(out, ck, input_ids):
    """The specialists' parity outputs ({} when there are none), when the checkpoint's text encoder is the replaced one's for every
    token that one knew (same token ids for the parity prompts, same transformer, same rows)."""
    old = torch.load(os.path.join(out, "weights.pt"), map_location="cpu")["model"]
    new = ck["model"]
    differ = []
    for k, v in old.items():
        if not k.startswith("text."):
            continue
        w = new[k][: v.shape[0]] if k == "text.tok.weight" else new[k]
        if w.shape != v.shape or not torch.equal(w, v):
            differ.append(k)
    if differ:
        raise SystemExit(f"--keep-specialists: the text encoder differs from the replaced weights.pt in {differ[:4]}; train with --freeze-known-text or export the specialists again")
    parity = json.load(open(os.path.join(out, "parity.json")))
    if parity["input_ids"] != input_ids.tolist():
        raise SystemExit("--keep-specialists: the tokenizer gives the parity prompts other token ids than the replaced one")
    return parity.get("specialists", {})


def manifest_path(model_dir):
    """The manifest beside the model folder."""
    return os.path.join(os.path.dirname(os.path.normpath(model_dir)), "manifest.json")


def parity_image():
    """Deterministic test image both PyTorch and the TypeScript test can make: [1,3,S,S], normalised."""
    ys = torch.arange(SIZE, dtype=torch.float32).view(SIZE, 1)
    xs = torch.arange(SIZE, dtype=torch.float32).view(1, SIZE)
    chans = []
    for c in range(3):
        v = 0.5 + 0.5 * torch.sin(xs * (0.05 + 0.01 * c)) * torch.cos(ys * 0.03)
        chans.append(v)
    img = torch.stack(chans)[None]
    return (img - 0.5) / 0.25


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "promptseg-builtin"))
    ap.add_argument("--ckpt", default="best")
    ap.add_argument("--init-from", default="weights.pt", help="with --specialist: what its training started from, as the manifest records it (default: the shipped weights.pt)")
    ap.add_argument("--specialist", default=None, help="export the checkpoint's image encoder and mask decoder as this specialist of the shipped model")
    ap.add_argument("--structures", default="", help="with --specialist: comma-separated structure slugs it draws")
    ap.add_argument("--own-presence", action="store_true", help="with --specialist: it also answers presence, quality and similarity for its structures (a network trained on every dataset, serving structures the model's own decoder never learned); the model's own first look is not asked about them")
    ap.add_argument("--image-sets", default="", help="with --own-presence: comma-separated training sets it answers for on their own images, including structures that sets the model's own network was trained on label too (the image's nearest of the sets labelling such a structure picks the network)")
    ap.add_argument("--keep-specialists", action="store_true", help="keep the model's specialists: allowed when the checkpoint's text encoder embeds every token the replaced weights knew exactly as they did (train.py --freeze-known-text), which is what the specialists' decoders were trained on")
    a = ap.parse_args()
    if a.image_sets and not (a.specialist and a.own_presence):
        ap.error("--image-sets needs --specialist and --own-presence (a network that answers for its structures altogether)")
    if a.specialist:
        return export_specialist(a)
    torch.set_num_threads(2)
    tok = WordPiece.load(a.model_dir)
    # best | last (in train-state/) or the path of a checkpoint file, e.g. a GPU run's snapshot
    ck = torch.load(a.ckpt if a.ckpt.endswith(".pt") else os.path.join(a.model_dir, "train-state", a.ckpt + ".pt"), map_location="cpu")
    model = from_checkpoint(ck)
    out = a.model_dir
    img = parity_image()
    prompts = ["left lung", "heart", "banana"]
    it, mt = token_batch(tok, prompts)
    kept = specialists_to_keep(out, ck, it) if a.keep_specialists else None
    te, ie, de = TextExport(model.text).eval(), ImageExport(model.image).eval(), DecoderExport(model.decoder).eval()
    with torch.no_grad():
        ref_text = model.text(it, mt)
        emb = te(it, mt)
        assert torch.allclose(ref_text, emb, atol=1e-5), "text export wrapper differs from the trained module"
        feats = ie(img)
        outs = de(*feats[:POOLED], emb)
    torch.onnx.export(te, (it, mt), os.path.join(out, "text_encoder.onnx"), opset_version=OPSET,
                      input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                      dynamic_axes={"input_ids": {0: "n", 1: "len"}, "attention_mask": {0: "n", 1: "len"}, "text_embeds": {0: "n"}})
    export_image_and_decoder(ie, de, img, feats, emb, os.path.join(out, "image_encoder.onnx"), os.path.join(out, "mask_decoder.onnx"))
    step = 13
    parity = dict(
        prompts=prompts, input_ids=it.tolist(), attention_mask=mt.tolist(), sample_step=step,
        text_embeds=[round(v, 6) for v in emb.flatten().tolist()],
        pooled=[round(v, 6) for v in feats[POOLED].flatten().tolist()],
        f5=[round(v, 6) for v in feats[FEATS.index("f5")].flatten()[::step].tolist()],
        mask_logits=[round(v, 5) for v in outs[0].flatten()[::step].tolist()],
        presence_logit=outs[1].tolist(), iou_logit=outs[2].tolist(), similarity=outs[3].tolist(),
    )
    if kept is not None:
        parity["specialists"] = kept
    json.dump(parity, open(os.path.join(out, "parity.json"), "w"))
    files = {}
    for f in ["text_encoder.onnx", "image_encoder.onnx", "mask_decoder.onnx", "tokenizer.json", "tokenizer_config.json"]:
        p = os.path.join(out, f)
        files[f] = dict(sha256=sha256(p), bytes=os.path.getsize(p))
    man_path = manifest_path(out)
    man = json.load(open(man_path))
    for m in man["models"]:
        if m["dir"] == os.path.basename(os.path.normpath(out)):
            if kept is not None:  # the specialists' own graphs stay beside the new ones
                m["files"] = {**{f: v for f, v in m["files"].items() if any(f in (s["image_encoder"], s["mask_decoder"]) for s in m.get("specialists", []))}, **files}
            else:
                m["files"] = files
                m.pop("specialists", None)  # fine-tuned from the weights this replaces: export them again
            m["input"]["mask_stride"] = SIZE // outs[0].shape[-1]  # the grid the decoder really draws
            m["training"] = dict(checkpoint=a.ckpt, step=ck["step"], arch=ck.get("arch", {}), val=ck.get("val"))
    json.dump(man, open(man_path, "w"), indent=1)
    json.dump(dict(checkpoint=a.ckpt, step=ck["step"], val=ck.get("val"), files=files), open(os.path.join(out, "export.json"), "w"), indent=1)
    # the exported weights alone, for a later fine-tune (train.py --init) or validate.py
    torch.save(dict(model=ck["model"], step=ck["step"], vocab_size=ck["vocab_size"], arch=ck.get("arch", {})), os.path.join(out, "weights.pt"))
    print(json.dumps(files, indent=1))
    print("presence", [round(float(torch.sigmoid(x)), 3) for x in outs[1]])


class UNetImageExport(nn.Module):
    """A unet_specialist.py network as a specialist's image encoder: f0 is its mask logits [B,1,S,S]; pooled
    (which the runner reads from every encoder; the pipeline uses the generalist's) their mean."""

    def __init__(self, unet):
        super().__init__()
        self.u = unet

    def forward(self, pixel_values):
        lg = self.u(pixel_values)
        return lg, lg.mean(dim=(2, 3))


class UNetDecoderExport(nn.Module):
    """Its mask decoder: the same logits for every prompt (the pipeline asks a specialist only for
    its own structures, and keeps the generalist's presence, quality and similarity)."""

    def forward(self, f0, text_embeds):
        zero = text_embeds[:, 0] * 0
        return f0.expand(text_embeds.shape[0], -1, -1, -1), zero, zero, zero


def export_unet_specialist(a, state, step=None):
    from unet_specialist import UNet
    base = state["down.0.0.weight"].shape[0]
    ie, de = UNetImageExport(UNet(base)).eval(), UNetDecoderExport().eval()
    ie.u.load_state_dict(state)
    out = a.model_dir
    img = parity_image()
    names = {"image_encoder": f"image_encoder.{a.specialist}.onnx", "mask_decoder": f"mask_decoder.{a.specialist}.onnx"}
    # its outputs do not depend on the text: any embeddings of the parity prompts' count and width trace it
    emb = torch.zeros(len(json.load(open(os.path.join(out, "parity.json")))["prompts"]), EMBED)
    with torch.no_grad():
        f0, pooled = ie(img)
        outs = de(f0, emb)
    torch.onnx.export(ie, (img,), os.path.join(out, names["image_encoder"]), opset_version=OPSET,
                      input_names=["pixel_values"], output_names=["f0", "pooled"],
                      dynamic_axes={"pixel_values": {0: "b"}, "f0": {0: "b"}, "pooled": {0: "b"}})
    torch.onnx.export(de, (f0, emb), os.path.join(out, names["mask_decoder"]), opset_version=OPSET,
                      input_names=["f0", "text_embeds"], output_names=["mask_logits", "presence_logit", "iou_logit", "similarity"],
                      dynamic_axes={"text_embeds": {0: "n"}, "mask_logits": {0: "n"}, "presence_logit": {0: "n"}, "iou_logit": {0: "n"}, "similarity": {0: "n"}})
    record_specialist(a, names, pooled, outs, dict(unet=base), step)


def export_specialist(a):
    import re
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", a.specialist) or not a.structures:
        raise SystemExit("--specialist needs a lower-case name and --structures")
    torch.set_num_threads(2)
    out = a.model_dir
    ck = torch.load(a.ckpt, map_location="cpu")
    if "down.0.0.weight" in ck.get("model", ck):  # unet_specialist.py (its first runs saved snapshots as bare state dicts)
        return export_unet_specialist(a, ck.get("model", ck), ck.get("step"))
    shipped = torch.load(os.path.join(out, "weights.pt"), map_location="cpu")
    # the specialist reads the shipped text encoder's embeddings: its own must be the same weights
    diff = [k for k, v in shipped["model"].items() if k.startswith("text.") and not torch.equal(v, ck["model"][k])]
    if diff:
        raise SystemExit(f"{a.ckpt}: text encoder differs from the shipped weights.pt ({diff[:4]}); train it with --train-only image.,decoder.")
    model = from_checkpoint(ck)
    tok = WordPiece.load(out)
    ie, de = ImageExport(model.image).eval(), DecoderExport(model.decoder).eval()
    img = parity_image()
    prompts = json.load(open(os.path.join(out, "parity.json")))["prompts"]
    it, mt = token_batch(tok, prompts)
    names = {"image_encoder": f"image_encoder.{a.specialist}.onnx", "mask_decoder": f"mask_decoder.{a.specialist}.onnx"}
    with torch.no_grad():
        emb = TextExport(model.text).eval()(it, mt)
        feats = ie(img)
        outs = de(*feats[:POOLED], emb)
    export_image_and_decoder(ie, de, img, feats, emb, os.path.join(out, names["image_encoder"]), os.path.join(out, names["mask_decoder"]))
    record_specialist(a, names, feats[POOLED], outs, ck.get("arch", {}), ck.get("step"))


def record_specialist(a, names, pooled, outs, arch, step_of_run=None):
    """The exported specialist's parity outputs and its manifest entry."""
    out = a.model_dir
    parity_path = os.path.join(out, "parity.json")
    parity = json.load(open(parity_path))
    step = parity["sample_step"]
    parity.setdefault("specialists", {})[a.specialist] = dict(
        pooled=[round(v, 6) for v in pooled.flatten().tolist()],
        mask_logits=[round(v, 5) for v in outs[0].flatten()[::step].tolist()],
        presence_logit=outs[1].tolist())
    json.dump(parity, open(parity_path, "w"))
    man_path = manifest_path(out)
    man = json.load(open(man_path))
    for m in man["models"]:
        if m["dir"] != os.path.basename(os.path.normpath(out)):
            continue
        for f in names.values():
            p = os.path.join(out, f)
            m["files"][f] = dict(sha256=sha256(p), bytes=os.path.getsize(p))
        entry = dict(name=a.specialist, structures=[s for s in a.structures.split(",") if s], **names,
                     **({"own_presence": True} if a.own_presence else {}),
                     **({"image_sets": [d for d in a.image_sets.split(",") if d]} if a.image_sets else {}),
                     training=dict(checkpoint=a.ckpt, step=step_of_run, arch=arch, init=a.init_from if "unet" not in arch else "none (trained from scratch)"))
        m["specialists"] = [s for s in m.get("specialists", []) if s["name"] != a.specialist] + [entry]
    json.dump(man, open(man_path, "w"), indent=1)
    print(json.dumps(names), "written; parity.json and the manifest updated")


if __name__ == "__main__":
    main()
