import type { RasterImage } from '../image/raster.js';
import { letterboxGeometry, type Letterbox } from '../image/resize.js';

/** A labelled image of the support set: the image and its 0/1 mask at the image's size. */
export interface LabelledImage {
  /** Where it came from (a file name), for errors and the adapter's record. */
  name: string;
  image: RasterImage;
  mask: Uint8Array;
}

/** The head's grid cells of one letterboxed image: which lie on the image, and the structure's share of each. */
export interface CellLabels {
  /** 1 where at least half of the cell's input pixels fall on the image (not the letterbox padding). */
  valid: Uint8Array;
  /** The share of the cell's on-image pixels inside the mask (0..1). */
  share: Float32Array;
}

/**
 * The mask seen on the head's grid: each input pixel of the size x size letterbox reads the image
 * pixel under its centre, and each grid cell averages its input pixels.
 */
export function cellLabels(mask: Uint8Array, width: number, height: number, size: number, G: number, box: Letterbox = letterboxGeometry(width, height, size)): CellLabels {
  const r = size / G;
  const inside = new Float32Array(G * G), hits = new Float32Array(G * G);
  for (let v = box.top; v < box.top + box.innerH; v++) {
    const y = Math.min(height - 1, Math.floor(((v - box.top + 0.5) * height) / box.innerH));
    const gy = Math.floor(v / r);
    for (let u = box.left; u < box.left + box.innerW; u++) {
      const x = Math.min(width - 1, Math.floor(((u - box.left + 0.5) * width) / box.innerW));
      const q = gy * G + Math.floor(u / r);
      inside[q] += 1;
      hits[q] += mask[y * width + x];
    }
  }
  const valid = new Uint8Array(G * G), share = new Float32Array(G * G);
  for (let q = 0; q < G * G; q++) {
    valid[q] = inside[q] >= (r * r) / 2 ? 1 : 0;
    share[q] = inside[q] ? hits[q] / inside[q] : 0;
  }
  return { valid, share };
}

/** An image mirrored left to right (with its mask), the augmentation every structure allows once its labels are mirrored too. */
export function mirrored(x: LabelledImage): LabelledImage {
  const { width: w, height: h, data } = x.image;
  const img = new Uint8Array(data.length), mask = new Uint8Array(x.mask.length);
  for (let y = 0; y < h; y++) {
    for (let u = 0; u < w; u++) {
      const s = y * w + u, d = y * w + (w - 1 - u);
      mask[d] = x.mask[s];
      img[d * 3] = data[s * 3];
      img[d * 3 + 1] = data[s * 3 + 1];
      img[d * 3 + 2] = data[s * 3 + 2];
    }
  }
  return { name: `${x.name} (mirrored)`, image: { width: w, height: h, data: img, format: x.image.format, ...(x.image.spacing ? { spacing: x.image.spacing } : {}) }, mask };
}

/**
 * A random variant of a labelled image: a crop of 70 to 100% of each side (the structure seen a
 * little larger, elsewhere in the frame) with its grey levels stretched by up to 15% and shifted
 * by up to 8% of the range. The frozen encoder then sees the support structure at more than one
 * scale, position and contrast, which is what a handful of images from one scan lacks.
 */
export function jittered(x: LabelledImage, rnd: () => number, k: number): LabelledImage {
  const { width: w, height: h, data } = x.image;
  const cw = Math.max(8, Math.round(w * (0.7 + 0.3 * rnd()))), ch = Math.max(8, Math.round(h * (0.7 + 0.3 * rnd())));
  const left = Math.floor(rnd() * (w - cw + 1)), top = Math.floor(rnd() * (h - ch + 1));
  const gain = 0.85 + 0.3 * rnd(), shift = (rnd() - 0.5) * 0.16 * 255;
  const img = new Uint8Array(cw * ch * 3), mask = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) {
    for (let u = 0; u < cw; u++) {
      const s = (top + y) * w + left + u, d = y * cw + u;
      mask[d] = x.mask[s];
      for (let c = 0; c < 3; c++) img[d * 3 + c] = Math.min(255, Math.max(0, Math.round((data[s * 3 + c] - 127.5) * gain + 127.5 + shift)));
    }
  }
  return { name: `${x.name} (variant ${k})`, image: { width: cw, height: ch, data: img, format: x.image.format }, mask };
}
