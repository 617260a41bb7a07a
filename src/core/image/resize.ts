import type { FloatGrid, RasterImage } from './raster.js';

/**
 * Triangle-filter resampling with the filter widened by the downscale factor (antialiased
 * bilinear, the same arithmetic as PIL's BILINEAR that the training data went through).
 */
function weights(inSize: number, outSize: number): { start: Int32Array; count: Int32Array; w: Float32Array; stride: number } {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float32Array(outSize * stride);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    const n = Math.min(hi - lo, stride);
    for (let j = 0; j < n; j++) {
      const x = Math.abs((j + lo - center + 0.5) / filterScale);
      const v = x < 1 ? 1 - x : 0;
      w[o * stride + j] = v;
      total += v;
    }
    if (total > 0) for (let j = 0; j < n; j++) w[o * stride + j] /= total;
    start[o] = lo;
    count[o] = n;
  }
  return { start, count, w, stride };
}

/** Resizes interleaved 8-bit RGB to outW x outH. */
export function resizeRgb(img: RasterImage, outW: number, outH: number): Uint8Array {
  const { width: W, height: H, data } = img;
  const wx = weights(W, outW);
  const wy = weights(H, outH);
  const tmp = new Float32Array(H * outW * 3);
  for (let y = 0; y < H; y++) {
    for (let o = 0; o < outW; o++) {
      let r = 0, g = 0, b = 0;
      const s = wx.start[o];
      for (let j = 0; j < wx.count[o]; j++) {
        const k = wx.w[o * wx.stride + j];
        const p = (y * W + s + j) * 3;
        r += k * data[p]; g += k * data[p + 1]; b += k * data[p + 2];
      }
      const q = (y * outW + o) * 3;
      // PIL rounds to 8 bits between the two passes
      tmp[q] = clamp255(Math.round(r)); tmp[q + 1] = clamp255(Math.round(g)); tmp[q + 2] = clamp255(Math.round(b));
    }
  }
  const out = new Uint8Array(outW * outH * 3);
  for (let o = 0; o < outH; o++) {
    const s = wy.start[o];
    for (let x = 0; x < outW; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < wy.count[o]; j++) {
        const k = wy.w[o * wy.stride + j];
        const p = ((s + j) * outW + x) * 3;
        r += k * tmp[p]; g += k * tmp[p + 1]; b += k * tmp[p + 2];
      }
      const q = (o * outW + x) * 3;
      out[q] = clamp255(Math.round(r)); out[q + 1] = clamp255(Math.round(g)); out[q + 2] = clamp255(Math.round(b));
    }
  }
  return out;
}

const clamp255 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

/** Python's round(): halves go to the even neighbour. Letterbox sizes must match training's. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Where an image of h x w sits inside a size x size letterbox. */
export interface Letterbox {
  size: number;
  scale: number;
  innerW: number;
  innerH: number;
  left: number;
  top: number;
}

export function letterboxGeometry(w: number, h: number, size: number): Letterbox {
  const scale = size / Math.max(h, w);
  const innerH = Math.max(1, roundHalfEven(h * scale));
  const innerW = Math.max(1, roundHalfEven(w * scale));
  return { size, scale, innerW, innerH, left: Math.floor((size - innerW) / 2), top: Math.floor((size - innerH) / 2) };
}

/** Letterboxes an image into size x size RGB with zero padding. */
export function letterbox(img: RasterImage, size: number): { pixels: Uint8Array; box: Letterbox } {
  const box = letterboxGeometry(img.width, img.height, size);
  const inner = resizeRgb(img, box.innerW, box.innerH);
  const pixels = new Uint8Array(size * size * 3);
  for (let y = 0; y < box.innerH; y++) {
    pixels.set(inner.subarray(y * box.innerW * 3, (y + 1) * box.innerW * 3), ((y + box.top) * size + box.left) * 3);
  }
  return { pixels, box };
}

/** 8-bit RGB interleaved -> float32 NCHW normalised as in training ((v/255 - mean) / std). */
export function toTensorData(pixels: Uint8Array, w: number, h: number, mean: number, std: number): Float32Array {
  const out = new Float32Array(3 * w * h);
  const plane = w * h;
  for (let i = 0; i < plane; i++) {
    out[i] = (pixels[i * 3] / 255 - mean) / std;
    out[plane + i] = (pixels[i * 3 + 1] / 255 - mean) / std;
    out[2 * plane + i] = (pixels[i * 3 + 2] / 255 - mean) / std;
  }
  return out;
}

/** Bilinear sample of a grid at continuous pixel-centre coordinates (clamped at the edges). */
export function sampleBilinear(g: FloatGrid, x: number, y: number): number {
  const xc = Math.min(Math.max(x, 0), g.width - 1);
  const yc = Math.min(Math.max(y, 0), g.height - 1);
  const x0 = Math.floor(xc), y0 = Math.floor(yc);
  const x1 = Math.min(x0 + 1, g.width - 1), y1 = Math.min(y0 + 1, g.height - 1);
  const fx = xc - x0, fy = yc - y0;
  const d = g.data, W = g.width;
  const a = d[y0 * W + x0] * (1 - fx) + d[y0 * W + x1] * fx;
  const b = d[y1 * W + x0] * (1 - fx) + d[y1 * W + x1] * fx;
  return a * (1 - fy) + b * fy;
}

/**
 * Maps a grid covering `gridSpan` input pixels (e.g. 128 logits over a 256 letterbox) back to an
 * outW x outH image, given where that image sits in the input (offset and scale).
 */
export function mapGrid(g: FloatGrid, gridSpan: number, outW: number, outH: number, place: { left: number; top: number; scaleX: number; scaleY: number }): FloatGrid {
  const out = new Float32Array(outW * outH);
  const k = g.width / gridSpan;
  for (let v = 0; v < outH; v++) {
    const yIn = place.top + (v + 0.5) * place.scaleY; // input-space coordinate (pixel edges)
    const gy = yIn * k - 0.5;
    for (let u = 0; u < outW; u++) {
      const xIn = place.left + (u + 0.5) * place.scaleX;
      out[v * outW + u] = sampleBilinear(g, xIn * k - 0.5, gy);
    }
  }
  return { width: outW, height: outH, data: out };
}
