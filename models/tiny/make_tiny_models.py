"""Writes the tiny test bundles under models/tiny/: the same file layout, ONNX input and output
names, configs and tokenizer formats as the real pretrained bundles, with a few kilobytes of
deterministic weights, so that `npm test` runs the real loading, tokenisation, pre- and
post-processing code of every runner without the hub.

    /usr/bin/python3 models/tiny/make_tiny_models.py     # needs python3-torch and python3-onnx
    /usr/bin/python3 models/tiny/make_tiny_models.py --full-size models/.peer/clipseg-rd64-full
        # instead: only a full-size CLIPSeg rd64-refined bundle with random weights (~600 MB, git-ignored)
        # and its manifest.json, for timing that architecture (src/bench/clipseg-peer.ts)

Bundles (real counterpart in parentheses):
  clipseg-tiny/       (Xenova/clipseg-rd64-refined)  onnx/model.onnx + onnx/model_quantized.onnx,
                      CLIP byte-level BPE tokenizer, ViT image processor
  slimsam-tiny/       (Xenova/slimsam-77-uniform, points-and-boxes revision)  onnx/vision_encoder.onnx +
                      onnx/prompt_encoder_mask_decoder.onnx (input_points, input_labels, input_boxes),
                      SamProcessor config
  slimsam-tiny-points/  (Xenova/slimsam-77-uniform, main revision)  the same, with a decoder that
                      takes points only (input_points, input_labels), as optimum's SamOnnxConfig exports
  biomedclip-tiny/    (the output of models/convert/biomedclip_to_onnx.py)  text_encoder.onnx,
                      image_encoder.onnx, BERT WordPiece tokenizer, CLIP image processor
  taskseg-tiny/       (a task-specific U-Net of models/train/task_baselines.py)  model.onnx + meta.json;
                      `--task-net-tiny` writes only these two files
The tiny graphs compute simple, deterministic functions (documented per class below); they are
not trained and say nothing about accuracy. model_quantized.onnx of clipseg-tiny is the same
graph as model.onnx (it exercises the runner's file choice, not quantisation).
"""
import json, os, shutil, sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train"))
from export import sha256  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)
WORDS = ["lung", "left", "right", "heart", "polyp", "lesion", "skin", "liver", "the", "a", "of", "in",
         "segment", "cell", "nuclei", "vessel", "brain", "tumour", "tumor", "optic", "cup", "disc", "x", "ray"]


def export(model, args, path, inputs, outputs, dynamic):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=14, do_constant_folding=True)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- CLIP byte-level BPE tokenizer
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer():
    chars = bytes_to_unicode()
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = []
    for w in WORDS:  # merge each word left to right, the last merge carrying </w>
        cur = w[0]
        for i, ch in enumerate(w[1:], 1):
            piece = ch + ("</w>" if i == len(w) - 1 else "")
            m = f"{cur} {piece}"
            if m not in merges:
                merges.append(m)
            cur = cur + piece
            if cur not in vocab:
                vocab[cur] = len(vocab)
    bos, eos = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = bos, eos
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(bos, "<|startoftext|>"), special(eos, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eos], "cls": ["<|startoftext|>", bos], "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<|endoftext|>", "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
    cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, "bos_token": "<|startoftext|>",
           "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    return tok, cfg, len(vocab)


class TinyCLIPSeg(nn.Module):
    """input_ids [N,L], attention_mask [N,L], pixel_values [1,3,S,S] -> logits [N,S,S] (one image,
    N prompts, as the real export is called), conditional_embeddings [N,D], pooled_output [1,D].
    Masked mean of token embeddings FiLM-modulates 8x8 patch features; a 1x1 head gives logits."""

    def __init__(self, vocab, d=16, patch=8):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.film = nn.Linear(d, 2 * d)
        self.head = nn.Conv2d(d, 1, 1)

    def forward(self, input_ids, attention_mask, pixel_values):
        m = attention_mask.unsqueeze(-1).float()
        t = (self.tok(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        f = self.patch(pixel_values)
        g, b = self.film(t).chunk(2, dim=-1)
        x = torch.relu(f * (1 + g[:, :, None, None]) + b[:, :, None, None])
        logits = F.interpolate(self.head(x), size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return logits, t, f.mean(dim=(2, 3))


def make_clipseg():
    out = os.path.join(HERE, "clipseg-tiny")
    shutil.rmtree(out, ignore_errors=True)
    tok, tcfg, V = clip_tokenizer()
    S = 64
    write_json(os.path.join(out, "tokenizer.json"), tok)
    write_json(os.path.join(out, "tokenizer_config.json"), tcfg)
    write_json(os.path.join(out, "special_tokens_map.json"), {k: tcfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})
    write_json(os.path.join(out, "config.json"), {"model_type": "clipseg", "architectures": ["CLIPSegForImageSegmentation"],
               "projection_dim": 16, "reduce_dim": 16, "text_config": {"vocab_size": V, "max_position_embeddings": 77},
               "vision_config": {"image_size": S, "patch_size": 8}, "tiny_test_model": True})
    write_json(os.path.join(out, "preprocessor_config.json"), {"image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor",
               "do_resize": True, "size": {"height": S, "width": S}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    m = TinyCLIPSeg(V)
    args = (torch.randint(0, V, (2, 5)), torch.ones(2, 5, dtype=torch.long), torch.randn(1, 3, S, S))
    path = os.path.join(out, "onnx", "model.onnx")
    export(m, args, path, ["input_ids", "attention_mask", "pixel_values"], ["logits", "conditional_embeddings", "pooled_output"],
           {"input_ids": {0: "n", 1: "len"}, "attention_mask": {0: "n", 1: "len"}, "logits": {0: "n"}, "conditional_embeddings": {0: "n"}})
    shutil.copyfile(path, os.path.join(out, "onnx", "model_quantized.onnx"))


# ---------------------------------------------------------------- full-size CLIPSeg rd64-refined (random weights)
# Sizes of CIDAS/clipseg-rd64-refined (its config.json): CLIP ViT-B/16 vision tower run at 352 px, the
# CLIP text transformer, projection_dim 512, reduce_dim 64, extract_layers [3, 6, 9], 4 decoder heads,
# decoder_intermediate_size 2048, use_complex_transposed_convolution true. Only for timing a peer:
# same tensor shapes and FLOPs, random weights, not loadable from any checkpoint.
FULL = {"image": 352, "patch": 16, "v_width": 768, "v_layers": 12, "v_heads": 12, "v_mlp": 3072,
        "vocab": 49408, "positions": 77, "t_width": 512, "t_layers": 12, "t_heads": 8, "t_mlp": 2048,
        "proj": 512, "reduce": 64, "extract": [3, 6, 9], "d_heads": 4, "d_mlp": 2048}


class FullAttention(nn.Module):
    """Multi-head self-attention with q, k, v and out projections (biases), scaled by head_dim^-0.5."""

    def __init__(self, d, heads):
        super().__init__()
        self.h, self.scale = heads, (d // heads) ** -0.5
        self.q, self.k, self.v, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, bias=None):
        n, l, d = x.shape[0], x.shape[1], x.shape[2]
        split = lambda t: t.reshape(n, l, self.h, -1).transpose(1, 2)
        q, k, v = split(self.q(x) * self.scale), split(self.k(x)), split(self.v(x))
        a = q @ k.transpose(-1, -2)
        if bias is not None:
            a = a + bias
        o = (a.softmax(-1) @ v).transpose(1, 2).reshape(n, l, d)
        return self.o(o)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class FullEncoderLayer(nn.Module):
    """CLIP encoder layer: pre-LN attention and pre-LN MLP (quick_gelu), each with a residual."""

    def __init__(self, d, heads, mlp):
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), FullAttention(d, heads), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x, bias=None):
        x = x + self.attn(self.ln1(x), bias)
        return x + self.fc2(quick_gelu(self.fc1(self.ln2(x))))


class FullDecoderLayer(nn.Module):
    """CLIPSeg decoder layer: post-LN attention and post-LN MLP (ReLU, as the decoder's layers are built)."""

    def __init__(self, d, heads, mlp):
        super().__init__()
        self.attn, self.ln1 = FullAttention(d, heads), nn.LayerNorm(d)
        self.fc1, self.fc2, self.ln2 = nn.Linear(d, mlp), nn.Linear(mlp, d), nn.LayerNorm(d)

    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.fc2(torch.relu(self.fc1(x))))


class FullVision(nn.Module):
    """CLIP ViT-B/16 at 352 px: 22 x 22 patches + class token (485 positions, the interpolated table
    stored directly), pre-LN, 12 layers; returns every hidden state and the post-LN class token."""

    def __init__(self, c=FULL):
        super().__init__()
        d, g = c["v_width"], c["image"] // c["patch"]
        self.patch = nn.Conv2d(3, d, c["patch"], c["patch"], bias=False)
        self.cls = nn.Parameter(torch.randn(d) * 0.02)
        self.pos = nn.Parameter(torch.randn(g * g + 1, d) * 0.02)
        self.pre_ln, self.post_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.layers = nn.ModuleList([FullEncoderLayer(d, c["v_heads"], c["v_mlp"]) for _ in range(c["v_layers"])])

    def forward(self, pixel_values):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
        x = self.pre_ln(x)
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return states, self.post_ln(x[:, 0])


class FullText(nn.Module):
    """CLIP text transformer: token + position embeddings, 12 pre-LN layers under a causal mask and
    the attention mask, final LN, the EOS token's state (the largest id, as CLIP pools) projected."""

    def __init__(self, c=FULL):
        super().__init__()
        d, p = c["t_width"], c["positions"]
        self.tok = nn.Embedding(c["vocab"], d)
        self.pos = nn.Parameter(torch.randn(p, d) * 0.01)
        self.layers = nn.ModuleList([FullEncoderLayer(d, c["t_heads"], c["t_mlp"]) for _ in range(c["t_layers"])])
        self.final_ln = nn.LayerNorm(d)
        self.proj = nn.Linear(d, c["proj"], bias=False)
        self.register_buffer("causal", torch.triu(torch.full((p, p), -1e9), 1))

    def forward(self, input_ids, attention_mask):
        l = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos[:l]
        bias = self.causal[:l, :l][None, None] + (1.0 - attention_mask[:, None, None, :].float()) * -1e9
        for layer in self.layers:
            x = layer(x, bias)
        x = self.final_ln(x)
        eos = input_ids.to(torch.int32).argmax(-1)
        pooled = x.gather(1, eos.long()[:, None, None].expand(-1, 1, x.shape[2]))[:, 0]
        return self.proj(pooled)


class FullCLIPSeg(nn.Module):
    """input_ids [N,L], attention_mask [N,L], pixel_values [1,3,352,352] -> logits [N,352,352],
    conditional_embeddings [N,512], pooled_output [1,512]. The vision tower runs once; its layer 3, 6
    and 9 states are reduced to 64 channels once and broadcast over the N prompts; the deepest,
    FiLM-modulated by each prompt's embedding, starts the 3 decoder layers (N x 485 tokens); the
    refined head (conv 3x3, transposed convs 4/4 and 4/4) upsamples 22 x 22 to 352 x 352."""

    def __init__(self, c=FULL):
        super().__init__()
        r = c["reduce"]
        self.c = c
        self.vision, self.text = FullVision(c), FullText(c)
        self.visual_proj = nn.Linear(c["v_width"], c["proj"], bias=False)
        self.film_mul, self.film_add = nn.Linear(c["proj"], r), nn.Linear(c["proj"], r)
        self.reduces = nn.ModuleList([nn.Linear(c["v_width"], r) for _ in c["extract"]])
        self.layers = nn.ModuleList([FullDecoderLayer(r, c["d_heads"], c["d_mlp"]) for _ in c["extract"]])
        k = c["patch"] // 4
        self.head = nn.Sequential(nn.Conv2d(r, r, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(r, r // 2, k, k), nn.ReLU(),
                                  nn.ConvTranspose2d(r // 2, 1, k, k))

    def forward(self, input_ids, attention_mask, pixel_values):
        states, pooled = self.vision(pixel_values)
        pooled_output = self.visual_proj(pooled)
        cond = self.text(input_ids, attention_mask)
        acts = [states[i + 1] for i in self.c["extract"]][::-1]  # deepest first, as the decoder reads them
        out = None
        for i, (a, layer, reduce) in enumerate(zip(acts, self.layers, self.reduces)):
            out = reduce(a) if out is None else reduce(a) + out
            if i == 0:  # conditional_layer 0
                out = self.film_mul(cond)[:, None, :] * out + self.film_add(cond)[:, None, :]
            out = layer(out)
        g = self.c["image"] // self.c["patch"]
        out = out[:, 1:, :].transpose(1, 2).reshape(-1, self.c["reduce"], g, g)
        return self.head(out)[:, 0], cond, pooled_output


def make_clipseg_full(out):
    """Writes only a full-size CLIPSeg rd64-refined bundle with random weights into `out` (the tiny
    CLIP tokenizer: its ids stay below the full vocabulary) and a manifest.json there with one entry
    (dir "."), for timing the peer architecture through the project's CLIPSeg runner."""
    out = os.path.abspath(out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    c = FULL
    tok, tcfg, V = clip_tokenizer()
    S = c["image"]
    write_json(os.path.join(out, "tokenizer.json"), tok)
    write_json(os.path.join(out, "tokenizer_config.json"), tcfg)
    write_json(os.path.join(out, "special_tokens_map.json"), {k: tcfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})
    write_json(os.path.join(out, "config.json"), {
        "model_type": "clipseg", "architectures": ["CLIPSegForImageSegmentation"], "conditional_layer": 0,
        "decoder_attention_dropout": 0.0, "decoder_hidden_act": "quick_gelu", "decoder_intermediate_size": c["d_mlp"],
        "decoder_num_attention_heads": c["d_heads"], "extract_layers": c["extract"], "projection_dim": c["proj"],
        "reduce_dim": c["reduce"], "use_complex_transposed_convolution": True,
        "text_config": {"model_type": "clipseg_text_model", "vocab_size": c["vocab"], "max_position_embeddings": c["positions"],
                        "hidden_size": c["t_width"], "intermediate_size": c["t_mlp"], "num_hidden_layers": c["t_layers"],
                        "num_attention_heads": c["t_heads"], "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                        "bos_token_id": V - 2, "eos_token_id": V - 1},
        "vision_config": {"model_type": "clipseg_vision_model", "image_size": S, "patch_size": c["patch"], "hidden_size": c["v_width"],
                          "intermediate_size": c["v_mlp"], "num_hidden_layers": c["v_layers"], "num_attention_heads": c["v_heads"],
                          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
        "random_weights_peer_model": True, "tokenizer_note": f"tiny CLIP BPE tokenizer ({V} ids) of models/tiny/make_tiny_models.py"})
    write_json(os.path.join(out, "preprocessor_config.json"), {"image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor",
               "do_resize": True, "size": {"height": S, "width": S}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    m = FullCLIPSeg(c)
    args = (torch.randint(0, V, (2, 5)), torch.ones(2, 5, dtype=torch.long), torch.randn(1, 3, S, S))
    with torch.no_grad():
        logits, cond, pooled = m.eval()(*args)
    assert tuple(logits.shape) == (2, S, S) and tuple(cond.shape) == (2, c["proj"]) and tuple(pooled.shape) == (1, c["proj"]), (logits.shape, cond.shape, pooled.shape)
    print(f"full-size CLIPSeg: {sum(p.numel() for p in m.parameters()) / 1e6:.1f} M parameters")
    export(m, args, os.path.join(out, "onnx", "model.onnx"), ["input_ids", "attention_mask", "pixel_values"],
           ["logits", "conditional_embeddings", "pooled_output"],
           {"input_ids": {0: "n", 1: "len"}, "attention_mask": {0: "n", 1: "len"}, "logits": {0: "n"}, "conditional_embeddings": {0: "n"}})
    names = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "onnx/model.onnx"]
    files = {n: {"sha256": sha256(os.path.join(out, n)), "bytes": os.path.getsize(os.path.join(out, n))} for n in names}
    entry = {"id": "clipseg-rd64-random", "title": "CLIPSeg rd64-refined architecture, random weights (fp32)", "runner": "clipseg-transformers",
             "dtype": "fp32", "verified_with_real_weights": False,
             "description": "Architecture of CIDAS/clipseg-rd64-refined (CLIP ViT-B/16 at 352 px, CLIP text transformer, rd64 refined decoder) "
                            "with random weights, in the layout of Xenova/clipseg-rd64-refined; for timing only, says nothing about accuracy.",
             "dir": ".", "files": files,
             "input": {"size": S, "channels": "RGB", "letterbox": "longer side resized to size, centred, zero padding; then the CLIPSeg image processor",
                       "mask_stride": 1, "tile": {"size": S, "stride": S * 3 // 4, "native_max_side": S}},
             "vocabulary_version": "none",
             "license": {"code": "Apache-2.0", "weights": "generated random weights, no licence restrictions", "training_data": "none (untrained)"},
             "card": os.path.relpath(os.path.join(HERE, "README.md"), out)}
    write_json(os.path.join(out, "manifest.json"), {"default": entry["id"], "models": [entry]})
    for n in names:
        print(f"{n}: {files[n]['bytes']} bytes")


class TinySamVision(nn.Module):
    """pixel_values [1,3,S,S] -> image_embeddings [1,C,S/4,S/4] (4x4 patch conv) and
    image_positional_embeddings [1,C,S/4,S/4] (fixed sinusoids), as SAM's vision encoder."""

    def __init__(self, S=64, C=8):
        super().__init__()
        self.patch = nn.Conv2d(3, C, 4, 4)
        g = S // 4
        ys, xs = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
        pe = torch.stack([torch.sin(xs * (k + 1) / g * 3.14159) if k % 2 == 0 else torch.cos(ys * (k + 1) / g * 3.14159) for k in range(C)])
        self.register_buffer("pe", pe[None])

    def forward(self, pixel_values):
        e = self.patch(pixel_values)
        return e, self.pe.expand(e.shape[0], -1, -1, -1)


class TinySamPointDecoder(nn.Module):
    """The `main` export of Xenova/slimsam-77-uniform (optimum's SamOnnxConfig): image_embeddings,
    image_positional_embeddings [1,C,G,G], input_points [1,P,N,2] (input pixels), input_labels [1,P,N]
    -> iou_scores [1,P,3], pred_masks [1,P,3,G,G]. As in SAM's prompt encoder traced without boxes,
    only labels 1 and 0 are typed points: label 1 paints a disc of radius 12 input pixels, label 0
    carves one of radius 6, and every other label (-1 not-a-point, -10 padding, and the box-corner
    labels 2 and 3 that only SAM's box path knows) is ignored. The three masks differ by a logit
    offset of -1, 0, +1. Geometry only, so post-processing can be checked exactly."""

    def __init__(self, S=64):
        super().__init__()
        G = S // 4
        c = (torch.arange(G).float() + 0.5) * 4
        self.register_buffer("gx", c.view(1, 1, 1, 1, G))
        self.register_buffer("gy", c.view(1, 1, 1, G, 1))
        self.register_buffer("offs", torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1))
        self.register_buffer("ious", torch.tensor([0.6, 0.9, 0.75]).view(1, 1, 3))

    def points(self, input_points, input_labels):
        """[1,P,G,G] disc logits (-100 without a positive point) and the carve of negative points."""
        lab = input_labels.float()
        px, py = input_points[..., 0:1].unsqueeze(-1), input_points[..., 1:2].unsqueeze(-1)  # [1,P,N,1,1]
        d = torch.sqrt((self.gx - px) ** 2 + (self.gy - py) ** 2)  # [1,P,N,G,G]
        pos = (lab == 1).float()[..., None, None]
        neg = (lab == 0).float()[..., None, None]
        disc = (pos * ((12 - d) / 3) + (1 - pos) * -100.0).amax(2)
        carve = (neg * torch.relu(6 - d)).sum(2)
        return disc, carve

    def outputs(self, logit, image_embeddings, image_positional_embeddings):
        masks = logit.unsqueeze(2) + self.offs
        ious = self.ious.expand(masks.shape[0], masks.shape[1], 3) + 0 * image_embeddings.mean() + 0 * image_positional_embeddings.mean()
        return ious, masks

    def forward(self, image_embeddings, image_positional_embeddings, input_points, input_labels):
        disc, carve = self.points(input_points, input_labels)
        return self.outputs(disc - carve, image_embeddings, image_positional_embeddings)


class TinySamBoxDecoder(TinySamPointDecoder):
    """The `points-and-boxes` export: the inputs of TinySamPointDecoder plus input_boxes [1,B,4]
    (x1, y1, x2, y2 in input pixels; B may be 0). With a box the mask logit is the distance inside
    it in grid cells (negative points still carve); without one, the point discs as above. Labels 2
    and 3 are ignored here too: a box reaches SAM's box embeddings only through input_boxes."""

    def forward(self, image_embeddings, image_positional_embeddings, input_points, input_labels, input_boxes):
        disc, carve = self.points(input_points, input_labels)
        gx, gy = self.gx[:, :, 0], self.gy[:, :, 0]  # [1,1,1,G], [1,1,G,1]
        x1, y1 = input_boxes[..., 0:1, None], input_boxes[..., 1:2, None]  # [1,B,1,1]
        x2, y2 = input_boxes[..., 2:3, None], input_boxes[..., 3:4, None]
        inside = torch.minimum(torch.minimum(gx - x1, x2 - gx), torch.minimum(gy - y1, y2 - gy)) / 4  # [1,B,G,G]
        G = disc.shape[-1]
        box = torch.cat([torch.full((1, 1, G, G), -100.0), inside], 1).amax(1, keepdim=True)  # [1,1,G,G]
        has_box = torch.ones_like(input_boxes[..., 0]).sum(1).clamp(max=1)[:, None, None, None]  # 0 when B = 0
        logit = has_box * box + (1 - has_box) * disc - carve
        return self.outputs(logit, image_embeddings, image_positional_embeddings)


def make_sam(name, decoder, vision_from=None):
    """A SAM bundle with `decoder`; its vision encoder is copied from the bundle `vision_from` when given."""
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    S = 64
    write_json(os.path.join(out, "config.json"), {"model_type": "sam", "architectures": ["SamModel"], "tiny_test_model": True,
               "vision_config": {"image_size": S, "patch_size": 4, "output_channels": 8}, "prompt_encoder_config": {"image_size": S, "image_embedding_size": S // 4},
               "mask_decoder_config": {"num_multimask_outputs": 3}})
    write_json(os.path.join(out, "preprocessor_config.json"), {"processor_class": "SamProcessor", "image_processor_type": "SamImageProcessor",
               "do_convert_rgb": True, "do_resize": True, "size": {"longest_edge": S}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
               "do_pad": True, "pad_size": {"height": S, "width": S}, "mask_size": {"longest_edge": S // 4}})
    if vision_from:
        os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
        shutil.copyfile(os.path.join(HERE, vision_from, "onnx", "vision_encoder.onnx"), os.path.join(out, "onnx", "vision_encoder.onnx"))
    else:
        v = TinySamVision(S)
        export(v, (torch.randn(1, 3, S, S),), os.path.join(out, "onnx", "vision_encoder.onnx"), ["pixel_values"],
               ["image_embeddings", "image_positional_embeddings"], {})
    dec = decoder(S)
    G = S // 4
    args = (torch.randn(1, 8, G, G), torch.randn(1, 8, G, G), torch.rand(1, 1, 2, 2) * S, torch.tensor([[[1, 0]]]))
    names = ["image_embeddings", "image_positional_embeddings", "input_points", "input_labels"]
    dynamic = {"input_points": {1: "point_batch", 2: "points"}, "input_labels": {1: "point_batch", 2: "points"}, "iou_scores": {1: "point_batch"}, "pred_masks": {1: "point_batch"}}
    if decoder is TinySamBoxDecoder:
        args = args + (torch.tensor([[[8.0, 8.0, 40.0, 40.0]]]),)
        names.append("input_boxes")
        dynamic["input_boxes"] = {1: "boxes"}
    export(dec, args, os.path.join(out, "onnx", "prompt_encoder_mask_decoder.onnx"), names, ["iou_scores", "pred_masks"], dynamic)


# ---------------------------------------------------------------- BiomedCLIP (converted layout)
def bert_tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789") + \
            ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + WORDS
    seen, v = set(), []
    for t in vocab:
        if t not in seen:
            seen.add(t)
            v.append(t)
    ids = {t: i for i, t in enumerate(v)}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                         for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                           "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ["[CLS]", "[SEP]"]}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": ids},
    }
    cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 256, "pad_token": "[PAD]", "unk_token": "[UNK]",
           "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    return tok, cfg, len(v)


class TinyTextTower(nn.Module):
    """input_ids, attention_mask [N,L] -> text_embeds [N,D], unit norm (masked mean + linear)."""

    def __init__(self, vocab, d=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.proj = nn.Linear(d, d)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        t = (self.tok(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(self.proj(t), dim=-1)


class TinyImageTower(nn.Module):
    """pixel_values [1,3,S,S] -> image_embeds [1,D] (unit norm) and patch_embeds [1,G*G,D]
    (projected patch tokens, the dense features MedCLIP-SAM style similarity maps are made of)."""

    def __init__(self, d=16, patch=8):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.proj = nn.Linear(d, d)

    def forward(self, pixel_values):
        f = self.patch(pixel_values).flatten(2).transpose(1, 2)
        p = self.proj(f)
        return F.normalize(p.mean(1), dim=-1), p


def make_biomedclip():
    out = os.path.join(HERE, "biomedclip-tiny")
    shutil.rmtree(out, ignore_errors=True)
    tok, tcfg, V = bert_tokenizer()
    S, P = 32, 8
    write_json(os.path.join(out, "tokenizer.json"), tok)
    write_json(os.path.join(out, "tokenizer_config.json"), tcfg)
    write_json(os.path.join(out, "config.json"), {"model_type": "biomedclip-onnx", "image_size": S, "patch_size": P, "grid": S // P,
               "embed_dim": 16, "logit_scale": 10.0, "context_length": 32, "tiny_test_model": True,
               # the untrained text tower sees the bare prompt; the real bundle's template is the runner's default
               "prompt_template": "{}", "source": "tiny test bundle made by models/tiny/make_tiny_models.py"})
    write_json(os.path.join(out, "preprocessor_config.json"), {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"height": S, "width": S},
               "resample": 3, "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
               "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True})
    export(TinyTextTower(V), (torch.randint(0, V, (2, 5)), torch.ones(2, 5, dtype=torch.long)), os.path.join(out, "text_encoder.onnx"),
           ["input_ids", "attention_mask"], ["text_embeds"], {"input_ids": {0: "n", 1: "len"}, "attention_mask": {0: "n", 1: "len"}, "text_embeds": {0: "n"}})
    export(TinyImageTower(16, P), (torch.randn(1, 3, S, S),), os.path.join(out, "image_encoder.onnx"), ["pixel_values"], ["image_embeds", "patch_embeds"], {})


# ---------------------------------------------------------------- task-specific network (task_baselines.py)
class TinyTaskNet(nn.Module):
    """pixels [1,3,S,S] raw 0..255 RGB -> logits [1,2,S,S]: channel 0 ("bright") = (mean over RGB - 128) / 8,
    channel 1 ("dark") = (96 - mean over RGB) / 8. No weights."""

    def forward(self, pixels):
        m = pixels.mean(1, keepdim=True)
        return torch.cat([(m - 128.0) / 8.0, (96.0 - m) / 8.0], 1)


def make_task_net_tiny():
    """taskseg-tiny/: model.onnx and meta.json in the layout task_baselines.py exports
    (format promptseg-task-net/1), 64 px, not tiled, two structures; untrained and deterministic."""
    out = os.path.join(HERE, "taskseg-tiny")
    S = 64
    onnx_path = os.path.join(out, "model.onnx")
    export(TinyTaskNet(), (torch.zeros(1, 3, S, S),), onnx_path, ["pixels"], ["logits"], {})
    write_json(os.path.join(out, "meta.json"), {
        "format": "promptseg-task-net/1", "dataset": "tiny_task", "structures": ["bright", "dark"], "input_size": S,
        "tiled": False, "tile": {"size": S, "stride": S * 3 // 4, "native_max_side": S},
        "arch": {"unet_base": 0, "params": 0},
        "train": {"cases": 0, "steps": 0, "batch": 0, "lr": 0, "elastic": 0, "seed": 0, "flips": False},
        "checkpoint_step": 0, "val_dice": {}, "onnx_sha256": sha256(onnx_path),
        "command": "/usr/bin/python3 models/tiny/make_tiny_models.py --task-net-tiny",
        "description": "tiny test task net (untrained): bright = (mean RGB - 128) / 8, dark = (96 - mean RGB) / 8"})


FULL_SIZE_OUT = None
TASK_NET_TINY = False
if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Writes the tiny test bundles (default) or, with --full-size, only a full-size CLIPSeg bundle.")
    ap.add_argument("--full-size", metavar="OUTDIR", help="write only a full-size CLIPSeg rd64-refined bundle with random weights "
                    "(about 600 MB, for benchmarks) and its manifest.json into OUTDIR; keep OUTDIR out of git (models/.peer/ is ignored)")
    ap.add_argument("--task-net-tiny", action="store_true", help="write only taskseg-tiny/model.onnx and meta.json "
                    "(a tiny task-specific network in task_baselines.py's export format); every other file stays as it is")
    _args = ap.parse_args()
    FULL_SIZE_OUT, TASK_NET_TINY = _args.full_size, _args.task_net_tiny
if __name__ == "__main__" and FULL_SIZE_OUT:
    make_clipseg_full(FULL_SIZE_OUT)
elif __name__ == "__main__" and TASK_NET_TINY:
    make_task_net_tiny()
    for f in ("model.onnx", "meta.json"):
        p = os.path.join(HERE, "taskseg-tiny", f)
        print(f"taskseg-tiny/{f}: {os.path.getsize(p)} bytes")
elif __name__ == "__main__":
    make_clipseg()
    make_sam("slimsam-tiny", TinySamBoxDecoder)
    with torch.random.fork_rng():  # the other bundles' weights do not depend on this one
        make_sam("slimsam-tiny-points", TinySamPointDecoder, vision_from="slimsam-tiny")
    make_biomedclip()
    make_task_net_tiny()  # no weights, no random draws
    for root, _, files in sorted(os.walk(HERE)):
        for f in sorted(files):
            if f != os.path.basename(__file__) and not f.endswith(".md") and f != "manifest.json":
                p = os.path.join(root, f)
                print(f"{os.path.relpath(p, HERE)}: {os.path.getsize(p)} bytes")


SAM_FILES = ["config.json", "preprocessor_config.json", "onnx/vision_encoder.onnx", "onnx/prompt_encoder_mask_decoder.onnx"]


def files_of(bundle, names):
    return {n: {"sha256": sha256(os.path.join(HERE, bundle, n)), "bytes": os.path.getsize(os.path.join(HERE, bundle, n))} for n in names}


def write_manifest():
    """models/tiny/manifest.json: an extra manifest (PROMPTSEG_EXTRA_MANIFESTS) for tests."""
    lic = {"code": "Apache-2.0", "weights": "generated test weights, no licence restrictions", "training_data": "none (untrained tiny test model)"}
    tile = lambda s: {"size": s, "stride": s * 3 // 4, "native_max_side": s}
    clip_files = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    entries = [
        {"id": "clipseg-tiny", "title": "CLIPSeg layout, tiny test weights (fp32)", "runner": "clipseg-transformers", "dtype": "fp32",
         "description": "Test bundle with the file layout, ONNX inputs/outputs and tokenizer format of Xenova/clipseg-rd64-refined; untrained.",
         "dir": "clipseg-tiny", "files": files_of("clipseg-tiny", clip_files + ["onnx/model.onnx"]),
         "input": {"size": 64, "channels": "RGB", "letterbox": "longer side resized to size, centred, zero padding; then the CLIPSeg image processor", "mask_stride": 1, "tile": tile(64)},
         "vocabulary_version": "none", "license": lic, "card": "../README.md"},
        {"id": "clipseg-tiny-q8", "title": "CLIPSeg layout, tiny test weights (q8 file)", "runner": "clipseg-transformers", "dtype": "q8",
         "description": "The same tiny test bundle loaded through the quantized file name (onnx/model_quantized.onnx).",
         "dir": "clipseg-tiny", "files": files_of("clipseg-tiny", clip_files + ["onnx/model_quantized.onnx"]),
         "input": {"size": 64, "channels": "RGB", "letterbox": "as clipseg-tiny", "mask_stride": 1, "tile": tile(64)},
         "vocabulary_version": "none", "license": lic, "card": "../README.md"},
        {"id": "slimsam-tiny", "title": "SlimSAM layout (points-and-boxes export), tiny geometric test decoder", "runner": "sam-transformers", "dtype": "fp32",
         "description": "Test bundle with the layout and ONNX inputs/outputs of Xenova/slimsam-77-uniform at its points-and-boxes revision (input_boxes); the decoder paints boxes and point discs exactly.",
         "dir": "slimsam-tiny", "files": files_of("slimsam-tiny", SAM_FILES),
         "input": {"size": 64, "channels": "RGB", "letterbox": "SAM processor: longest side resized to size, padded bottom/right", "mask_stride": 4, "tile": tile(64)},
         "vocabulary_version": "none", "license": lic, "card": "../README.md"},
        {"id": "slimsam-tiny-points", "title": "SlimSAM layout (main export, points only), tiny geometric test decoder", "runner": "sam-transformers", "dtype": "fp32",
         "description": "Test bundle with the ONNX inputs of Xenova/slimsam-77-uniform at main: no input_boxes, and only labels 0 and 1 are points.",
         "dir": "slimsam-tiny-points", "files": files_of("slimsam-tiny-points", SAM_FILES),
         "input": {"size": 64, "channels": "RGB", "letterbox": "SAM processor: longest side resized to size, padded bottom/right", "mask_stride": 4, "tile": tile(64)},
         "vocabulary_version": "none", "license": lic, "card": "../README.md"},
        {"id": "biomedclip-tiny", "title": "BiomedCLIP (converted layout) + SlimSAM, tiny test weights", "runner": "biomedclip-onnx", "refine_with": "slimsam-tiny",
         "description": "Test bundle with the layout models/convert/biomedclip_to_onnx.py writes; refined by slimsam-tiny.",
         "dir": "biomedclip-tiny", "files": files_of("biomedclip-tiny", ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "text_encoder.onnx", "image_encoder.onnx"]),
         "input": {"size": 32, "channels": "RGB", "letterbox": "longer side resized to size, centred, zero padding; then the CLIP image processor", "mask_stride": 8, "tile": tile(32)},
         "vocabulary_version": "none", "license": lic, "card": "../README.md"},
    ]
    write_json(os.path.join(HERE, "manifest.json"), {"models": entries})


if __name__ == "__main__" and not FULL_SIZE_OUT and not TASK_NET_TINY:
    write_manifest()
