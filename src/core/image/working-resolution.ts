import type { MaskStats } from './mask-stats.js';
import { components } from './mask-stats.js';
import type { RasterImage } from './raster.js';
import { setImmediate as nextTurn } from 'node:timers/promises';
import sharp from 'sharp';

/** The size of the image a working copy stands for. */
export interface OriginalSize {
  width: number;
  height: number;
  spacing?: { row: number; col: number };
}

/**
 * Area-averages an interleaved image of `channels` channels from w x h to tw x th (tw <= w,
 * th <= h): each target pixel is the mean of the source pixels its footprint covers, weighted by
 * the overlap, so thin bright structures are dimmed, never dropped.
 */
export async function areaDownscale<T extends Uint8Array | Float32Array>(src: T, w: number, h: number, channels: number, tw: number, th: number, make: (n: number) => T): Promise<T> {
  const out = make(tw * th * channels);
  const fx = w / tw, fy = h / th;
  const acc = new Float64Array(tw * channels);
  const rowsPerTurn = Math.max(1, Math.floor(2_000_000 / (w * fy * channels)));
  for (let ty = 0; ty < th; ty++) {
    if (ty % rowsPerTurn === 0) await nextTurn(); // about 2 M source values per turn of the event loop
    acc.fill(0);
    const y0 = ty * fy, y1 = y0 + fy;
    for (let y = Math.floor(y0); y < Math.min(h, Math.ceil(y1)); y++) {
      const wy = Math.min(y + 1, y1) - Math.max(y, y0);
      for (let tx = 0; tx < tw; tx++) {
        const x0 = tx * fx, x1 = x0 + fx;
        for (let x = Math.floor(x0); x < Math.min(w, Math.ceil(x1)); x++) {
          const wgt = wy * (Math.min(x + 1, x1) - Math.max(x, x0));
          for (let c = 0; c < channels; c++) acc[tx * channels + c] += wgt * src[(y * w + x) * channels + c];
        }
      }
    }
    const norm = 1 / (fx * fy);
    for (let i = 0; i < tw * channels; i++) out[ty * tw * channels + i] = src instanceof Uint8Array ? Math.round(acc[i] * norm) : acc[i] * norm;
  }
  return out;
}

/**
 * The image the pipeline works on: the image itself when it has at most maxPixels, otherwise an
 * area-averaged copy with at most maxPixels (same aspect ratio), its pixel spacing and DICOM
 * modality values scaled with it, and `original` naming the size the results are given in.
 * Every full-resolution step (post-processing, statistics, stored maps) then costs the working
 * size, whatever was uploaded; masks are brought back to the original size where they are served.
 */
export async function workingImage(image: RasterImage, maxPixels: number): Promise<RasterImage> {
  const { width: w, height: h } = image;
  if (w * h <= maxPixels) return image;
  const f = Math.sqrt(maxPixels / (w * h));
  const tw = Math.max(1, Math.floor(w * f)), th = Math.max(1, Math.floor(h * f));
  // the pixels through libvips (off the event loop); DICOM modality values in turns of the loop
  const data = new Uint8Array(await sharp(image.data, { raw: { width: w, height: h, channels: 3 } }).resize(tw, th, { fit: 'fill', kernel: 'linear' }).raw().toBuffer());
  const values = image.dicom?.values ? await areaDownscale(image.dicom.values, w, h, 1, tw, th, (n) => new Float32Array(n)) : undefined;
  return {
    ...image,
    width: tw,
    height: th,
    data,
    ...(image.spacing ? { spacing: { row: (image.spacing.row * h) / th, col: (image.spacing.col * w) / tw } } : {}),
    ...(image.dicom ? { dicom: { ...image.dicom, ...(values ? { values } : {}) } } : {}),
    original: { width: w, height: h, ...(image.spacing ? { spacing: image.spacing } : {}) },
  };
}

/** Per working column (row): how many original columns (rows) show it, their sum, first and last. */
function multiplicities(w: number, h: number, W: number, H: number) {
  const cnt = (map: Int32Array, m: number) => {
    const n = new Float64Array(m), sum = new Float64Array(m), first = new Int32Array(m).fill(-1), last = new Int32Array(m).fill(-1);
    map.forEach((v, i) => {
      n[v]++;
      sum[v] += i;
      if (first[v] < 0) first[v] = i;
      last[v] = i;
    });
    return { n, sum, first, last };
  };
  return { cx: cnt(nearest(W, w), w), cy: cnt(nearest(H, h), h) };
}

/** Each 8-connected component of upscaleMask(mask) as its area and bbox [x, y, width, height], computed at the working size. */
export function upscaledComponents(mask: Uint8Array, w: number, h: number, W: number, H: number): { areaPx: number; bbox: [number, number, number, number] }[] {
  const { cx, cy } = multiplicities(w, h, W, H);
  const { sizes, labels } = components(mask, w, h);
  const out = sizes.map(() => ({ area: 0, x0: W, y0: H, x1: -1, y1: -1 }));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const l = labels[y * w + x];
      if (!l || !cx.n[x] || !cy.n[y]) continue;
      const c = out[l - 1];
      c.area += cx.n[x] * cy.n[y];
      c.x0 = Math.min(c.x0, cx.first[x]);
      c.x1 = Math.max(c.x1, cx.last[x]);
      c.y0 = Math.min(c.y0, cy.first[y]);
      c.y1 = Math.max(c.y1, cy.last[y]);
    }
  }
  return out.map((c) => ({ areaPx: c.area, bbox: [c.x0, c.y0, c.x1 - c.x0 + 1, c.y1 - c.y0 + 1] }));
}

/** For each original coordinate 0..n-1, the working coordinate it shows (nearest neighbour). */
function nearest(n: number, m: number): Int32Array {
  const map = new Int32Array(n);
  for (let i = 0; i < n; i++) map[i] = Math.min(m - 1, Math.floor(((i + 0.5) * m) / n));
  return map;
}

/** A working-size mask at the original size, nearest neighbour (each original pixel shows the working pixel under its centre). */
export function upscaleMask(mask: Uint8Array, w: number, h: number, W: number, H: number): Uint8Array {
  const mx = nearest(W, w), my = nearest(H, h);
  const out = new Uint8Array(W * H);
  for (let Y = 0; Y < H; Y++) {
    const row = my[Y] * w;
    for (let X = 0; X < W; X++) out[Y * W + X] = mask[row + mx[X]];
  }
  return out;
}

/**
 * The statistics maskStats would give for upscaleMask(mask), computed at the working size: each
 * working column and row counts as the original columns and rows it stands for. Nearest-neighbour
 * upscaling keeps 8-connectivity, so the components are the working mask's.
 */
export function upscaledStats(mask: Uint8Array, w: number, h: number, W: number, H: number): MaskStats {
  const { cx, cy } = multiplicities(w, h, W, H);
  let area = 0, sx = 0, sy = 0, x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    if (!cy.n[y]) continue;
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x] || !cx.n[x]) continue;
      area += cx.n[x] * cy.n[y];
      sx += cx.sum[x] * cy.n[y];
      sy += cy.sum[y] * cx.n[x];
      x0 = Math.min(x0, cx.first[x]);
      x1 = Math.max(x1, cx.last[x]);
      y0 = Math.min(y0, cy.first[y]);
      y1 = Math.max(y1, cy.last[y]);
    }
  }
  if (area === 0) return { areaPx: 0, bbox: null, centroid: null, components: 0, largestComponentPx: 0 };
  const { count, sizes, labels } = components(mask, w, h);
  const up = new Float64Array(sizes.length);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (labels[y * w + x]) up[labels[y * w + x] - 1] += cx.n[x] * cy.n[y];
  return { areaPx: area, bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1], centroid: [sx / area, sy / area], components: count, largestComponentPx: up.length ? Math.max(...up) : 0 };
}
