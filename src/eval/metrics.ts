/**
 * Segmentation metrics, implemented once: Dice, IoU, HD95 and NSD (surface Dice) with pixel
 * spacing, AUROC, ECE, and bootstrap confidence intervals. Masks are 1 byte per pixel, row-major.
 */

import { percentile } from '../core/stats.js';

export interface Spacing {
  row: number;
  col: number;
}

export function iou(a: Uint8Array, b: Uint8Array): number {
  let inter = 0, uni = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ? 1 : 0, y = b[i] ? 1 : 0;
    inter += x & y; uni += x | y;
  }
  return uni === 0 ? 1 : inter / uni;
}

/** Mask pixels with at least one 4-neighbour outside the mask (the image border counts as outside). */
export function boundary(m: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!m[i]) continue;
      if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || !m[i - 1] || !m[i + 1] || !m[i - w] || !m[i + w]) out[i] = 1;
    }
  }
  return out;
}

/** 1D squared distance transform of f (lower envelope of parabolas, Felzenszwalb & Huttenlocher), with step size s. */
function edt1d(f: Float64Array, n: number, s: number, d: Float64Array, v: Int32Array, z: Float64Array): void {
  const s2 = s * s;
  let k = 0;
  v[0] = 0;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = 1; q < n; q++) {
    if (f[q] === Infinity) continue;
    if (f[v[k]] === Infinity) {
      v[k] = q;
      continue;
    }
    let sI: number;
    for (;;) {
      const p = v[k];
      sI = (f[q] + s2 * q * q - (f[p] + s2 * p * p)) / (2 * s2 * (q - p));
      if (sI <= z[k] && k > 0) k--;
      else break;
    }
    k++;
    v[k] = q;
    z[k] = sI;
    z[k + 1] = Infinity;
  }
  if (f[v[0]] === Infinity && k === 0) {
    for (let q = 0; q < n; q++) d[q] = Infinity;
    return;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    const p = v[k];
    d[q] = s2 * (q - p) * (q - p) + f[p];
  }
}

/** Euclidean distance (in spacing units) from every pixel to the nearest set pixel of `seeds`. */
export function distanceTransform(seeds: Uint8Array, w: number, h: number, spacing: Spacing = { row: 1, col: 1 }): Float64Array {
  const n = Math.max(w, h);
  const f = new Float64Array(n), d = new Float64Array(n), z = new Float64Array(n + 1);
  const v = new Int32Array(n);
  const g = new Float64Array(w * h);
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) f[y] = seeds[y * w + x] ? 0 : Infinity;
    edt1d(f, h, spacing.row, d, v, z);
    for (let y = 0; y < h; y++) g[y * w + x] = d[y];
  }
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) f[x] = g[y * w + x];
    edt1d(f, w, spacing.col, d, v, z);
    for (let x = 0; x < w; x++) out[y * w + x] = Math.sqrt(d[x]);
  }
  return out;
}

function directedDistances(from: Uint8Array, toDist: Float64Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < from.length; i++) if (from[i]) out.push(toDist[i]);
  return out;
}

export interface SurfaceMetrics {
  /** 95th percentile Hausdorff distance (max of the two directed 95th percentiles); Infinity when one mask is empty. */
  hd95: number;
  /** Normalised surface distance: share of both boundaries within `tolerance` of the other. */
  nsd: number;
}

/** HD95 and NSD of two masks; both empty gives hd95 0 and nsd 1, one empty gives Infinity and 0. */
export function surfaceMetrics(a: Uint8Array, b: Uint8Array, w: number, h: number, tolerance: number, spacing: Spacing = { row: 1, col: 1 }): SurfaceMetrics {
  const ba = boundary(a, w, h), bb = boundary(b, w, h);
  const na = ba.reduce((s, v) => s + v, 0), nb = bb.reduce((s, v) => s + v, 0);
  if (na === 0 && nb === 0) return { hd95: 0, nsd: 1 };
  if (na === 0 || nb === 0) return { hd95: Infinity, nsd: 0 };
  const da = distanceTransform(ba, w, h, spacing), db = distanceTransform(bb, w, h, spacing);
  const ab = directedDistances(ba, db), bA = directedDistances(bb, da);
  const hd95 = Math.max(percentile(ab, 95), percentile(bA, 95));
  const within = ab.filter((x) => x <= tolerance).length + bA.filter((x) => x <= tolerance).length;
  return { hd95, nsd: within / (ab.length + bA.length) };
}

/** Area under the ROC curve by the rank statistic (ties count half). */
export function auroc(pos: number[], neg: number[]): number {
  if (!pos.length || !neg.length) return NaN;
  const all = [...pos.map((s) => ({ s, p: 1 })), ...neg.map((s) => ({ s, p: 0 }))].sort((x, y) => x.s - y.s);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j].s === all[i].s) j++;
    const avg = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) if (all[k].p) rankSum += avg;
    i = j;
  }
  return (rankSum - (pos.length * (pos.length + 1)) / 2) / (pos.length * neg.length);
}

/** Expected calibration error over equal-width probability bins, with the reliability table. */
export function calibration(probs: ArrayLike<number>, labels: ArrayLike<number>, bins = 10): { ece: number; table: { lo: number; hi: number; count: number; meanConfidence: number; accuracy: number }[] } {
  const cnt = new Float64Array(bins), conf = new Float64Array(bins), acc = new Float64Array(bins);
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    const k = Math.min(bins - 1, Math.floor(p * bins));
    cnt[k]++; conf[k] += p; acc[k] += labels[i] ? 1 : 0;
  }
  let ece = 0;
  const n = probs.length;
  const table = [];
  for (let k = 0; k < bins; k++) {
    const c = cnt[k];
    const mc = c ? conf[k] / c : 0, ma = c ? acc[k] / c : 0;
    if (n) ece += (c / n) * Math.abs(mc - ma);
    table.push({ lo: k / bins, hi: (k + 1) / bins, count: c, meanConfidence: mc, accuracy: ma });
  }
  return { ece, table };
}

// implemented once in core (adaptation and its calibration use them too)
export { bootstrapCi, dice, mean, percentile, seededRandom } from '../core/stats.js';
