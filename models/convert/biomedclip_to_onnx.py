"""Converts BiomedCLIP (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) to the ONNX
bundle promptseg's `biomedclip-onnx` runner reads (manifest entry `biomedclip-slimsam`).

Run where open_clip_torch, transformers, torch and onnx are installed and the weights can be
fetched (or are in the Hugging Face cache):

    pip install open_clip_torch transformers onnx
    python3 models/convert/biomedclip_to_onnx.py --out models/biomedclip-pubmedbert

Writes into --out:
  text_encoder.onnx    input_ids [N,L] int64, attention_mask [N,L] int64 -> text_embeds [N,512] (unit norm)
  image_encoder.onnx   pixel_values [1,3,224,224] -> image_embeds [1,512] (unit norm),
                       patch_embeds [1,196,512] (patch tokens through the image projection)
  tokenizer.json, tokenizer_config.json, ...   the PubMedBERT WordPiece tokenizer (fast format)
  preprocessor_config.json   CLIP-style image processor settings (OpenAI CLIP mean/std, 224 px)
  config.json          image_size, patch_size, grid, embed_dim, logit_scale, context_length, prompt_template
and prints each file's sha256 and size. Not run on promptseg's own machines (no hub access); the
layout is exercised in npm test by models/tiny/biomedclip-tiny.
"""
import argparse, json, os, sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train"))
from export import sha256  # noqa: E402  (the same file hash the built-in model's export writes)

MODEL = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


class TextTower(torch.nn.Module):
    def __init__(self, model, pad_id):
        super().__init__()
        self.model, self.pad_id = model, pad_id

    def forward(self, input_ids, attention_mask):
        # open_clip's HF text encoder derives its mask from the pad id; padding positions are set to
        # it here so the exported graph honours attention_mask (and keeps it as an input)
        ids = input_ids * attention_mask + self.pad_id * (1 - attention_mask)
        return F.normalize(self.model.encode_text(ids), dim=-1)


class ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.visual = model.visual

    def forward(self, pixel_values):
        tokens = self.visual.trunk.forward_features(pixel_values)  # [1, 1 + 196, 768] (timm ViT, normed)
        prefix = getattr(self.visual.trunk, "num_prefix_tokens", 1)
        patches = self.visual.head(tokens[:, prefix:])  # the image projection applied to every patch token
        pooled = self.visual.head(self.visual.trunk.forward_head(tokens, pre_logits=True))
        return F.normalize(pooled, dim=-1), patches


def main():
    import open_clip  # only needed here

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--opset", type=int, default=14)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    model, _ = open_clip.create_model_from_pretrained(MODEL)
    tok = open_clip.get_tokenizer(MODEL)
    model.eval()
    hf_tok = tok.tokenizer  # a transformers fast tokenizer
    context = int(getattr(tok, "context_length", 256))
    hf_tok.save_pretrained(a.out)

    ids = hf_tok(["left lung", "a polyp in the colon"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(TextTower(model, hf_tok.pad_token_id), (ids["input_ids"], ids["attention_mask"]), os.path.join(a.out, "text_encoder.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"], opset_version=a.opset,
                          dynamic_axes={"input_ids": {0: "n", 1: "len"}, "attention_mask": {0: "n", 1: "len"}, "text_embeds": {0: "n"}})
        torch.onnx.export(ImageTower(model), (torch.randn(1, 3, 224, 224),), os.path.join(a.out, "image_encoder.onnx"),
                          input_names=["pixel_values"], output_names=["image_embeds", "patch_embeds"], opset_version=a.opset)
        # a check the runner's maths relies on: pooled image embedding == open_clip's encode_image
        x = torch.randn(1, 3, 224, 224)
        ref = F.normalize(model.encode_image(x), dim=-1)
        got, patches = ImageTower(model)(x)
        print(f"image embedding max |diff| vs open_clip: {(ref - got).abs().max().item():.2e}; patch tokens {tuple(patches.shape)}")

    grid = 224 // 16
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"model_type": "biomedclip-onnx", "source": MODEL, "image_size": 224, "patch_size": 16, "grid": grid,
                   "embed_dim": int(patches.shape[-1]), "logit_scale": float(model.logit_scale.exp().item()), "context_length": context,
                   "prompt_template": "this is a photo of {}"}, f, indent=1)
    with open(os.path.join(a.out, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"height": 224, "width": 224}, "resample": 3,
                   "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True}, f, indent=1)
    for name in sorted(os.listdir(a.out)):
        p = os.path.join(a.out, name)
        print(f"{name}: sha256 {sha256(p)}, {os.path.getsize(p)} bytes")
    print("then: promptseg models pull slimsam-77-uniform; promptseg calibrate --model biomedclip-slimsam")


if __name__ == "__main__":
    main()
