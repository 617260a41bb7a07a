import { GridSampler } from './grid-sampler.js';
import type { FloatGrid, GridPlacement, RasterImage } from './raster.js';

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

/** Resizes interleaved 8-bit RGB to outW x outH. A grey image (R = G = B everywhere) is resampled once and copied to the three channels: the same values. */
export function resizeRgb(img: RasterImage, outW: number, outH: number): Uint8Array {
  const { width: W, height: H, data } = img;
  const plane = greyPlane(data);
  if (!plane) return resizeColour(data, W, H, outW, outH);
  const small = resizeGrey(plane, W, H, outW, outH);
  const out = new Uint8Array(outW * outH * 3);
  for (let i = 0, p = 0; i < small.length; i++, p += 3) out[p] = out[p + 1] = out[p + 2] = small[i];
  return out;
}

/** The one channel of a grey RGB image (R = G = B everywhere); undefined when a pixel has colour. */
function greyPlane(rgb: Uint8Array): Uint8Array | undefined {
  const n = rgb.length / 3, plane = new Uint8Array(n);
  for (let i = 0, p = 0; i < n; i++, p += 3) {
    const v = rgb[p];
    if (rgb[p + 1] !== v || rgb[p + 2] !== v) return undefined;
    plane[i] = v;
  }
  return plane;
}

/**
 * resizeColour for one channel, with the same sums in the same order (so the same bytes): the
 * four-tap case of a 2x reduction written out, and the column pass accumulated a row at a time.
 */
function resizeGrey(data: Uint8Array, W: number, H: number, outW: number, outH: number): Uint8Array {
  const wx = weights(W, outW), wy = weights(H, outH);
  const xs = wx.start, xn = wx.count, xw = Float64Array.from(wx.w), xst = wx.stride;
  const tmp = new Uint8Array(H * outW);
  for (let y = 0; y < H; y++) {
    const row = y * W, q = y * outW;
    for (let o = 0; o < outW; o++) {
      const s = row + xs[o], n = xn[o], w0 = o * xst;
      let v: number;
      if (n === 4) v = xw[w0] * data[s] + xw[w0 + 1] * data[s + 1] + xw[w0 + 2] * data[s + 2] + xw[w0 + 3] * data[s + 3];
      else {
        v = 0;
        for (let j = 0; j < n; j++) v += xw[w0 + j] * data[s + j];
      }
      tmp[q + o] = clamp255(Math.round(v));
    }
  }
  const ys = wy.start, yn = wy.count, yw = Float64Array.from(wy.w), yst = wy.stride;
  const out = new Uint8Array(outW * outH), acc = new Float64Array(outW);
  for (let o = 0; o < outH; o++) {
    const s = ys[o], n = yn[o], w0 = o * yst;
    acc.fill(0);
    for (let j = 0; j < n; j++) {
      const k = yw[w0 + j], r = (s + j) * outW;
      for (let x = 0; x < outW; x++) acc[x] += k * tmp[r + x];
    }
    const q = o * outW;
    for (let x = 0; x < outW; x++) out[q + x] = clamp255(Math.round(acc[x]));
  }
  return out;
}

/** Separable resampling of interleaved 8-bit RGB: along rows, rounded to 8 bits as PIL does between the passes, then along columns. */
function resizeColour(data: Uint8Array, W: number, H: number, outW: number, outH: number): Uint8Array {
  const wx = weights(W, outW), wy = weights(H, outH);
  const tmp = new Uint8Array(H * outW * 3);
  for (let y = 0; y < H; y++) {
    for (let o = 0; o < outW; o++) {
      const s = wx.start[o], n = wx.count[o], w0 = o * wx.stride, q = (y * outW + o) * 3;
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < n; j++) {
        const k = wx.w[w0 + j], p = (y * W + s + j) * 3;
        r += k * data[p]; g += k * data[p + 1]; b += k * data[p + 2];
      }
      tmp[q] = clamp255(Math.round(r)); tmp[q + 1] = clamp255(Math.round(g)); tmp[q + 2] = clamp255(Math.round(b));
    }
  }
  const out = new Uint8Array(outW * outH * 3);
  for (let o = 0; o < outH; o++) {
    const s = wy.start[o], n = wy.count[o], w0 = o * wy.stride;
    for (let x = 0; x < outW; x++) {
      const q = (o * outW + x) * 3;
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < n; j++) {
        const k = wy.w[w0 + j], p = ((s + j) * outW + x) * 3;
        r += k * tmp[p]; g += k * tmp[p + 1]; b += k * tmp[p + 2];
      }
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
  // the formula for each of the 256 byte values, rounded to float32 as the store would round it
  const norm = new Float32Array(256);
  for (let v = 0; v < 256; v++) norm[v] = (v / 255 - mean) / std;
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[i] = norm[pixels[p]];
    out[plane + i] = norm[pixels[p + 1]];
    out[2 * plane + i] = norm[pixels[p + 2]];
  }
  return out;
}

/**
 * Maps a grid covering `gridSpan` input pixels (e.g. 128 logits over a 256 letterbox) back to an
 * outW x outH image, given where that image sits in the input (offset and scale).
 */
export function mapGrid(g: FloatGrid, gridSpan: number, outW: number, outH: number, place: GridPlacement): FloatGrid {
  const from = { grid: g, gridSpan, place };
  return { width: outW, height: outH, data: new GridSampler(from, outW, outH).values(), from };
}
