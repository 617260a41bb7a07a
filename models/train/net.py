"""The built-in model: a text encoder, an image encoder and a text-conditioned mask decoder.

Sized for CPU: a MobileNetV2-style depthwise-separable encoder, an FPN decoder conditioned on the
prompt by FiLM at every level, and small heads for presence, predicted IoU and a text-region
similarity (the CLIP-style alignment between a text embedding and mask-pooled image features).
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

EMBED = 256
DEC = 96
MID = 48
FINE = 16
FULL = 8
# what ImageEncoder returns, in order, before the pooled embedding (also the ONNX output names)
FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5", "embed_map")


def bn_act(c):
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride=1, expand=3):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), bn_act(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), bn_act(mid),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_res else y


class DSConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), bn_act(c),
            nn.Conv2d(c, c, 1, bias=False), bn_act(c),
        )

    def forward(self, x):
        return self.body(x)


def widen(c, width):
    """Channel count c scaled by width, rounded to a multiple of 8 (c itself at width 1)."""
    return c if width == 1 else max(8, int(round(c * width / 8)) * 8)


class ImageEncoder(nn.Module):
    """image [B,3,S,S] -> f0 (FULL@S), f1 (FINE@S/2), f2..f5 (DEC@S/4..S/32), embed_map (EMBED@S/16),
    pooled (192 x width). f0 is a small full-resolution branch (local edges and intensity) that lets the mask
    head draw structures thinner than the S/2 grid (vessels, membranes, the myocardial ring).

    refine=True adds a text-independent top-down path (a U-Net decoder on the image side): S/4
    context refines the S/2 features, and those the full-resolution ones, so f1 and f0 see more than
    a few pixels around them. It runs once per image (cached like the rest of the encoder) and leaves
    the per-prompt decoder as it is; its last layers start at zero, so a network initialised from
    weights without it starts with the same outputs.

    width scales every stage's channels and full_width is the full-resolution branch's hidden width:
    capacity on the image side, computed once per image, while the per-prompt decoder (whose inputs
    keep their channel counts) costs the same."""

    def __init__(self, refine=False, width=1.0, full_width=16):
        super().__init__()
        self.refine = refine
        c1, c2, c3, c4, c5 = (widen(c, width) for c in (24, 40, 64, 128, 192))
        h = full_width
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 3, 2, 1, bias=False), bn_act(c1), MBConv(c1, c1, 1, 2))
        self.s4 = nn.Sequential(MBConv(c1, c2, 2), MBConv(c2, c2))
        self.s8 = nn.Sequential(MBConv(c2, c3, 2), MBConv(c3, c3), MBConv(c3, c3))
        self.s16 = nn.Sequential(MBConv(c3, c4, 2), MBConv(c4, c4), MBConv(c4, c4))
        self.s32 = nn.Sequential(MBConv(c4, c5, 2), MBConv(c5, c5), MBConv(c5, c5))
        self.lat1 = nn.Sequential(nn.Conv2d(c1, FINE, 1, bias=False), nn.BatchNorm2d(FINE))
        self.lat2 = nn.Sequential(nn.Conv2d(c2, MID, 1, bias=False), nn.BatchNorm2d(MID))
        self.lat3 = nn.Sequential(nn.Conv2d(c3, DEC, 1, bias=False), nn.BatchNorm2d(DEC))
        self.lat4 = nn.Sequential(nn.Conv2d(c4, DEC, 1, bias=False), nn.BatchNorm2d(DEC))
        self.lat5 = nn.Sequential(nn.Conv2d(c5, DEC, 1, bias=False), nn.BatchNorm2d(DEC))
        self.embed = nn.Conv2d(c4, EMBED, 1)
        self.full = nn.Sequential(
            nn.Conv2d(3, h, 3, 1, 1, bias=False), bn_act(h),
            nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), bn_act(h),
            nn.Conv2d(h, FULL, 1, bias=False), nn.BatchNorm2d(FULL),
        )
        if refine:
            self.td2 = nn.Sequential(nn.Conv2d(c2, c1, 1, bias=False), bn_act(c1))
            self.td1 = nn.Sequential(nn.Conv2d(2 * c1, 2 * c1, 3, 1, 1, groups=2 * c1, bias=False), bn_act(2 * c1),
                                     nn.Conv2d(2 * c1, c1, 1, bias=False), bn_act(c1))
            self.td0 = nn.Sequential(nn.Conv2d(h + c1, h + c1, 3, 1, 1, groups=h + c1, bias=False), bn_act(h + c1),
                                     nn.Conv2d(h + c1, h, 1, bias=False), bn_act(h))
            self.out1 = nn.Conv2d(c1, FINE, 1)
            self.out0 = nn.Conv2d(h, FULL, 1)
            for m in (self.out1, self.out0):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        c1 = self.stem(x)
        c2 = self.s4(c1)
        c3 = self.s8(c2)
        c4 = self.s16(c3)
        c5 = self.s32(c4)
        pooled = c5.mean(dim=(2, 3))
        h0 = self.full[:4](x)  # the full-resolution branch's 16-channel hidden layer
        f0, f1 = self.full[4:](h0), self.lat1(c1)
        if self.refine:
            up = lambda t, ref: F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)
            r1 = self.td1(torch.cat([c1, up(self.td2(c2), c1)], 1))
            r0 = self.td0(torch.cat([h0, up(r1, h0)], 1))
            f1, f0 = f1 + self.out1(r1), f0 + self.out0(r0)
        return (f0, f1, self.lat2(c2), self.lat3(c3), self.lat4(c4), self.lat5(c5), self.embed(c4), pooled)


class TextEncoder(nn.Module):
    """token ids [N,L] + attention mask [N,L] -> unit-norm embedding [N,EMBED]."""

    def __init__(self, vocab_size, max_len=24, dim=128):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 256, dropout=0.1, batch_first=True)
        self.tf = nn.TransformerEncoder(layer, 2)
        self.proj = nn.Linear(dim, EMBED)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids, mask):
        L = ids.shape[1]
        x = self.tok(ids) + self.pos[:, :L]
        x = self.tf(x, src_key_padding_mask=mask == 0)
        m = mask.unsqueeze(-1).to(x.dtype)
        x = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(self.proj(x), dim=-1)


class FiLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(EMBED, 2 * c)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x, e):
        g, b = self.lin(e).chunk(2, dim=-1)
        return x * (1 + g[:, :, None, None]) + b[:, :, None, None]


def coords(x):
    n, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
    xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([x, xs, ys], 1)


class MaskDecoder(nn.Module):
    """features (batch N, already expanded) + text embedding [N,EMBED] ->
    mask logits [N,1,S,S], presence logit [N], IoU logit [N], similarity [N].

    The prompt-conditioned FPN runs at S/32..S/4; the S/2 mask is a per-pixel linear map of the
    text-independent fine features f1 whose coefficients the coarse path predicts (a dynamic
    head), and the S mask adds a second such map of the full-resolution features f0 to the
    upsampled S/2 logits, so full-resolution work per prompt stays a few multiply-adds a pixel.

    head > 0 adds a full-resolution head of that many channels: two 3x3 convolutions over the mask's
    probabilities, f0, the upsampled f1 and 8 channels of the prompt-conditioned S/4 path, whose output
    is added to the mask logits (its last layer starts at zero, so a decoder initialised from weights
    without it starts with the same outputs). A nonlinear full-resolution stage, as a U-Net's last
    layers are, for the thinnest structures; it costs per prompt, so it is meant for a specialist."""

    def __init__(self, head=0):
        super().__init__()
        self.head_width = head
        if head:
            self.head_ctx = nn.Conv2d(MID, 8, 1)
            self.head = nn.Sequential(nn.Conv2d(1 + FULL + FINE + 8, head, 3, 1, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(head, head, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(head, 1, 1))
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        self.in5 = nn.Conv2d(DEC + 2, DEC, 1)
        self.film = nn.ModuleList([FiLM(DEC) for _ in range(3)] + [FiLM(MID)])
        self.conv = nn.ModuleList([DSConv(DEC) for _ in range(3)] + [DSConv(MID)])
        self.to_mid = nn.Conv2d(DEC, MID, 1)
        self.coef = nn.Conv2d(MID, FINE + 1, 1)
        self.coef_full = nn.Conv2d(MID, FULL + 1, 1)
        nn.init.zeros_(self.coef_full.weight)  # starts as the S/2 head, upsampled
        nn.init.zeros_(self.coef_full.bias)
        self.presence = nn.Sequential(nn.Linear(2 * DEC + EMBED, 128), nn.ReLU(inplace=True), nn.Linear(128, 1))
        self.quality = nn.Sequential(nn.Linear(2 * MID + 2, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, f0, f1, f2, f3, f4, f5, emap, e):
        p = self.in5(coords(f5))
        p = self.conv[0](self.film[0](p, e))
        pres_feat = torch.cat([p.mean(dim=(2, 3)), p.amax(dim=(2, 3)), e], 1)
        for i, f in ((1, f4), (2, f3)):
            p = f + F.interpolate(p, size=f.shape[-2:], mode="bilinear", align_corners=False)
            p = self.conv[i](self.film[i](p, e))
        p = f2 + self.to_mid(F.interpolate(p, size=f2.shape[-2:], mode="bilinear", align_corners=False))
        p = self.conv[3](self.film[3](p, e))
        q_feat = torch.cat([p.mean(dim=(2, 3)), p.amax(dim=(2, 3))], 1)
        c = F.interpolate(self.coef(p), size=f1.shape[-2:], mode="bilinear", align_corners=False)
        half = (c[:, :FINE] * f1).sum(1, keepdim=True) + c[:, FINE:]
        c0 = F.interpolate(self.coef_full(p), size=f0.shape[-2:], mode="bilinear", align_corners=False)
        logits = (F.interpolate(half, size=f0.shape[-2:], mode="bilinear", align_corners=False)
                  + (c0[:, :FULL] * f0).sum(1, keepdim=True) + c0[:, FULL:])
        if self.head_width:
            up = lambda t: F.interpolate(t, size=f0.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits + self.head(torch.cat([torch.sigmoid(logits), f0, up(f1), up(self.head_ctx(p))], 1))
        presence = self.presence(pres_feat).squeeze(1)
        prob = torch.sigmoid(logits)
        area = prob.mean(dim=(1, 2, 3))
        quality = self.quality(torch.cat([q_feat, area[:, None], presence[:, None]], 1)).squeeze(1)
        # text-region similarity: mask-pooled embedding of the predicted region vs the text
        w = F.avg_pool2d(prob, int(prob.shape[-1]) // int(emap.shape[-1]))  # S -> S/16, same as adaptive pooling to emap size
        region = (emap * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp(min=1e-4)
        sim = (F.normalize(region, dim=-1) * e).sum(-1)
        return logits, presence, quality, sim

    def region_embedding(self, emap, mask):
        w = F.avg_pool2d(mask, int(mask.shape[-1]) // int(emap.shape[-1]))
        region = (emap * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp(min=1e-4)
        return F.normalize(region, dim=-1)


def from_checkpoint(ck):
    """A checkpoint dict (train.py's last/best/snapshot, or weights.pt) -> the network it holds,
    rebuilt with the architecture it was trained with, in eval mode."""
    model = PromptSegNet(ck["vocab_size"], **ck.get("arch", {}))
    model.load_state_dict(ck["model"])
    return model.eval()


class PromptSegNet(nn.Module):
    def __init__(self, vocab_size, refine=False, width=1.0, full_width=16, head=0):
        super().__init__()
        # saved with checkpoints; export and validation rebuild from it (older checkpoints lack the later keys)
        self.arch = dict(refine=refine, width=width, full_width=full_width, **({"head": head} if head else {}))
        self.image = ImageEncoder(refine, width, full_width)
        self.text = TextEncoder(vocab_size)
        self.decoder = MaskDecoder(head)
