"""Rebuilds a shipped specialist's PyTorch checkpoint from its two ONNX graphs, so that it can be
trained further on a machine that lacks the run's train-state (which is not committed).

    python3 models/train/from_onnx.py --specialist em -o runs/em-from-onnx.pt

The exporter folds every BatchNorm into the convolution before it, so a graph holds one weight and
one bias per convolution. The network is rebuilt with the architecture the manifest records for the
specialist; each of its convolutions takes the graph's weight and bias in the order the forward pass
runs them (checked by shape), and each BatchNorm after a convolution becomes the identity (weight 1,
running mean 0, running variance 1 - eps) that adds the folded bias. Linear layers keep their names
in the graph. The text encoder is the shipped weights.pt's, as for every specialist.

The rebuilt network matches the graphs in eval mode; in training mode its BatchNorm layers would
normalise by batch statistics again, so train it with `train.py --bn-frozen`. The result is checked
against the specialist's parity fixture (parity.json) and the script fails if it does not match.
"""
import argparse, json, os, sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import FEATURES, PromptSegNet  # noqa: E402
from export import ROOT, DecoderExport, ImageExport, TextExport, manifest_path, parity_image  # noqa: E402
from evaluate import token_batch  # noqa: E402
from tokenizer import WordPiece  # noqa: E402


def conv_order(module, *inputs):
    """The Conv2d modules of `module` in the order its forward pass runs them."""
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(*inputs)
    for h in hooks:
        h.remove()
    return order


def bn_after(module):
    """conv -> the BatchNorm2d that follows it in its parent Sequential (directly or as bn_act's first layer)."""
    out = {}
    for m in module.modules():
        if not isinstance(m, nn.Sequential):
            continue
        kids = list(m.children())
        for a, b in zip(kids, kids[1:]):
            if isinstance(a, nn.Conv2d):
                if isinstance(b, nn.BatchNorm2d):
                    out[a] = b
                elif isinstance(b, nn.Sequential) and isinstance(next(iter(b.children()), None), nn.BatchNorm2d):
                    out[a] = next(iter(b.children()))
    return out


def graph_convs(path):
    """[(weight, bias)] of the graph's Conv nodes in graph order, and its named initialisers."""
    g = onnx.load(path).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    convs = []
    for n in g.node:
        if n.op_type == "Conv":
            w = init[n.input[1]]
            b = init[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            convs.append((w, b))
    return convs, init


def load_convs(module, order, convs, where):
    if len(order) != len(convs):
        raise SystemExit(f"{where}: the network runs {len(order)} convolutions, the graph holds {len(convs)}")
    bns = bn_after(module)
    for k, (conv, (w, b)) in enumerate(zip(order, convs)):
        if tuple(conv.weight.shape) != w.shape:
            raise SystemExit(f"{where}: convolution {k} is {tuple(conv.weight.shape)} in the network, {w.shape} in the graph")
        conv.weight.data.copy_(torch.from_numpy(np.array(w)))
        bn = bns.get(conv)
        if bn is not None:
            bn.weight.data.fill_(1.0)
            bn.bias.data.copy_(torch.from_numpy(np.array(b)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        elif conv.bias is not None:
            conv.bias.data.copy_(torch.from_numpy(np.array(b)))
        elif np.any(b):
            raise SystemExit(f"{where}: convolution {k} has no bias and no BatchNorm, but the graph gives it one")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "promptseg-builtin"))
    ap.add_argument("--specialist", required=True)
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    man = json.load(open(manifest_path(a.model_dir)))
    entry = next(m for m in man["models"] if m["dir"] == os.path.basename(os.path.normpath(a.model_dir)))
    sp = next((s for s in entry.get("specialists", []) if s["name"] == a.specialist), None)
    if sp is None:
        raise SystemExit(f"no specialist {a.specialist!r} in the manifest (it has: {', '.join(s['name'] for s in entry.get('specialists', []))})")
    shipped = torch.load(os.path.join(a.model_dir, "weights.pt"), map_location="cpu")
    arch = sp.get("training", {}).get("arch", {})
    model = PromptSegNet(shipped["vocab_size"], **arch)
    model.load_state_dict({k: v for k, v in shipped["model"].items() if k.startswith("text.")}, strict=False)
    model.eval()
    img = parity_image()

    convs, _ = graph_convs(os.path.join(a.model_dir, sp["image_encoder"]))
    load_convs(model.image, conv_order(model.image, img), convs, sp["image_encoder"])
    with torch.no_grad():
        feats = model.image(img)
    convs, init = graph_convs(os.path.join(a.model_dir, sp["mask_decoder"]))
    emb = torch.nn.functional.normalize(torch.randn(1, 256), dim=-1)
    load_convs(model.decoder, conv_order(model.decoder, *feats[:len(FEATURES)], emb), convs, sp["mask_decoder"])
    # the rest (the Linear layers: FiLM, presence, quality) keep their names in the graph
    linear = {f"d.{k}": p for m_name, m in model.decoder.named_modules() if isinstance(m, nn.Linear)
              for k, p in ((f"{m_name}.weight", m.weight), (f"{m_name}.bias", m.bias))}
    missing = sorted(k for k in linear if k not in init)
    if missing:
        raise SystemExit(f"{sp['mask_decoder']}: the graph lacks {missing[:4]}")
    for k, p in linear.items():
        p.data.copy_(torch.from_numpy(np.array(init[k])))
    named = len(linear)

    # check against the parity fixture written when the specialist was exported
    parity = json.load(open(os.path.join(a.model_dir, "parity.json")))
    want = parity["specialists"][a.specialist]
    tok = WordPiece.load(a.model_dir)
    it, mt = token_batch(tok, parity["prompts"])
    with torch.no_grad():
        e = TextExport(model.text).eval()(it, mt)
        f = ImageExport(model.image).eval()(img)
        outs = DecoderExport(model.decoder).eval()(*f[:len(FEATURES)], e)
    got = dict(pooled=f[len(FEATURES)].flatten().numpy(), mask_logits=outs[0].flatten()[::parity["sample_step"]].numpy(), presence_logit=outs[1].numpy())
    worst = {k: float(np.max(np.abs(got[k] - np.asarray(want[k])) / (1 + np.abs(np.asarray(want[k]))))) for k in want}
    print(f"{named} Linear weights and biases by name; largest relative difference from the parity fixture: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    if max(worst.values()) > 1e-3:
        raise SystemExit("the rebuilt network does not match the specialist's parity fixture")
    torch.save(dict(model=model.state_dict(), step=sp.get("training", {}).get("step"), vocab_size=shipped["vocab_size"], arch=model.arch,
                    rebuilt_from=[sp["image_encoder"], sp["mask_decoder"]]), a.out)
    print(f"wrote {a.out} (train it further with train.py --init {a.out} --train-only image.,decoder. --bn-frozen)")


if __name__ == "__main__":
    main()
