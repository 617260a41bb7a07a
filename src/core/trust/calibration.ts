import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { sigmoid } from './scores.js';
import { IMAGE_TRANSFORMS } from '../pipeline/image-tta.js';

/** k nearest-neighbour statistics of image features over training images, per training dataset. */
const OodStatsSchema = z.object({
  /** Standardisation of the pooled image embedding (mean and standard deviation over training images). */
  mean: z.array(z.number()).min(1, 'the statistics need features (mean is empty)'),
  std: z.array(z.number()).min(1, 'the statistics need features (std is empty)'),
  /** Neighbours counted: the score uses the distance to the k-th nearest training image. */
  k: z.number().int().positive(),
  /** Per training dataset: standardised training embeddings, float32 little-endian, base64. */
  bank: z.record(z.string(), z.string()),
  /** Per dataset: the 95th percentile of its own images' leave-one-out k-NN distance. */
  radius: z.record(z.string(), z.number()),
  /** Flag when the smallest distance / radius ratio over datasets exceeds this. */
  threshold: z.number(),
});

/**
 * What promptseg fitted on a model's validation split: pixel temperature, presence and quality
 * recalibration, out-of-distribution statistics, verdict thresholds and conformal thresholds.
 * Written by `promptseg calibrate`; read by the pipeline.
 */
export const CalibrationSchema = z.object({
  fitted_on: z.object({
    split: z.string(),
    cases: z.number().int(),
    datasets: z.array(z.string()),
    /** Datasets of the data root left out because the model does not know some of their structures. */
    skipped_datasets: z.array(z.object({ dataset: z.string(), unknown: z.array(z.string()) })).optional(),
    date: z.string(),
    model_files_sha256: z.string(),
  }),
  pixel_temperature: z.number().positive(),
  presence: z.object({ a: z.number(), b: z.number() }),
  quality: z.object({ a: z.number(), b: z.number() }),
  /**
   * Presence and quality Platt scaling of each specialist that answers for its structures
   * altogether (manifest `own_presence`): its scores come from another network than the model's own,
   * on another scale, so they are fitted on the val prompts it answered. The others use `presence` and `quality`.
   */
  specialist_scores: z
    .record(
      z.string(),
      z.object({
        presence: z.object({
          a: z.number(),
          b: z.number(),
          /**
           * Weight of how near the image lies to the training sets that label the prompt's structure:
           * ln of the k-NN distance ratio of its pooled embedding to the nearest of them (`ood`;
           * lnDistanceToSets). presence = sigmoid(a z + near ln d + b). Fitted for a network trained on
           * few negatives per structure, whose own presence confuses kinds of image.
           */
          near: z.number().optional(),
        }),
        quality: z.object({ a: z.number(), b: z.number() }),
      }),
    )
    .optional(),
  ood: OodStatsSchema.optional().describe('k-NN statistics of the pooled image embedding (the OOD score, and which training set an image lies nearest: image-routing.ts); absent for models without one (e.g. CLIPSeg)'),
  /** The same k-NN statistics on the model-free appearance descriptor (src/core/trust/appearance.ts). */
  appearance: OodStatsSchema.optional(),
  thresholds: z.object({
    presence: z.number(),
    quality: z.number(),
    uncertain_fraction: z.number(),
    /** OOD score (ratio to the flag threshold) above which the verdict is reject rather than review: the 99.5th percentile of val images' scores, at least 1. */
    ood_reject: z.number().optional(),
  }),
  /** Structures whose val Dice rose by at least half a point when the model's specialist for them drew the mask (specialist 'auto' uses it for them). */
  specialists: z.array(z.string()).optional(),
  /** For a structure that more than one specialist may redraw: the one chosen (the highest mean val Dice change); the others use their only one. */
  specialist_names: z.record(z.string(), z.string()).optional(),
  /** What the choice was made from: per structure, the mean val Dice change with its specialist (the chosen one) and the cases; with several, each one's mean change. */
  specialist_gain: z.record(z.string(), z.object({ mean: z.number(), n: z.number().int(), by_specialist: z.record(z.string(), z.number()).optional() })).optional(),
  /** Structures whose val Dice improved with the second, closer look (zoom 'auto' uses it for them). */
  zoom: z.array(z.string()).optional(),
  /** What the choice was made from: per structure, the mean val Dice change with the second look and the cases. */
  zoom_gain: z.record(z.string(), z.object({ mean: z.number(), n: z.number().int() })).optional(),
  /** Per structure: the pixel threshold (calibrated probability) that gave the highest mean val Dice, for the structures where it beat 0.5 by at least half a point; used when a request names no threshold. */
  mask_threshold: z.record(z.string(), z.number().gt(0).lt(1)).optional(),
  /** What the choice was made from: per structure, the best threshold, its mean val Dice change against 0.5, and the cases. */
  mask_threshold_gain: z.record(z.string(), z.object({ threshold: z.number(), mean: z.number(), n: z.number().int() })).optional(),
  /** Structures whose val Dice rose by at least half a point when only the mask's largest connected component was kept (largest_component 'auto' uses it for them). */
  largest_component: z.array(z.string()).optional(),
  /** What the choice was made from: per structure, the mean val Dice change and the cases. */
  largest_component_gain: z.record(z.string(), z.object({ mean: z.number(), n: z.number().int() })).optional(),
  /** Per structure: how many image transforms (tta_image) to average by default, for the structures where that raised mean val Dice by at least half a point. */
  tta_image: z.record(z.string(), z.number().int().min(1).max(IMAGE_TRANSFORMS.length)).optional(),
  /** What the choice was made from: per structure, the mean val Dice change for each count tried and the cases. */
  tta_image_gain: z.record(z.string(), z.object({ n: z.number().int(), gain: z.record(z.string(), z.number()) })).optional(),
  conformal: z.record(z.string(), z.record(z.string(), z.number())).describe('structure slug -> nominal recall ("0.9") -> probability threshold'),
});
export type Calibration = z.infer<typeof CalibrationSchema>;
export type OodStats = z.infer<typeof OodStatsSchema>;

/** The fingerprint of a model's files (the manifest's sha256 and size per file) that a calibration records as `fitted_on.model_files_sha256`. */
export function modelFilesFingerprint(files: unknown): string {
  return createHash('sha256').update(JSON.stringify(files)).digest('hex');
}

export function loadCalibration(file: string): Calibration | undefined {
  if (!existsSync(file)) return undefined;
  const r = CalibrationSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!r.success) throw new Error(`invalid calibration file ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

export const logit = (p: number): number => {
  const q = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
  return Math.log(q / (1 - q));
};

export const platt = (z: number, c: { a: number; b: number }): number => sigmoid(c.a * z + c.b);

/** Presence scaling: Platt on the presence logit, plus the weight of ln d (lnDistanceToSets) where the fit has one. */
export type PresenceScaling = { a: number; b: number; near?: number };

/** Calibrated presence from the raw presence logit and, where the scaling weighs it, ln of the distance to the structure's training sets. */
export const presenceProbability = (z: number, c: PresenceScaling, lnNear: number): number => sigmoid(c.a * z + (c.near ?? 0) * lnNear + c.b);

const banks = new WeakMap<object, Map<string, Float32Array[]>>();

function decodeBank(ood: OodStats): Map<string, Float32Array[]> {
  let m = banks.get(ood);
  if (!m) {
    m = new Map();
    const dim = ood.mean.length;
    for (const [name, b64] of Object.entries(ood.bank)) {
      const buf = Buffer.from(b64, 'base64');
      const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      const list: Float32Array[] = [];
      for (let i = 0; i + dim <= all.length; i += dim) list.push(all.subarray(i, i + dim));
      m.set(name, list);
    }
    banks.set(ood, m);
  }
  return m;
}

/** Standardises an embedding with the calibration's training mean and spread. */
export function standardise(e: ArrayLike<number>, mean: number[], std: number[]): Float32Array {
  return Float32Array.from(mean, (mu, i) => (e[i] - mu) / std[i]);
}

/** RMS distance (per dimension) from q to its k-th nearest vector in list, skipping index `skip`. */
export function kthNearest(q: ArrayLike<number>, list: Float32Array[], k: number, skip = -1): number {
  const d: number[] = [];
  for (let j = 0; j < list.length; j++) {
    if (j === skip) continue;
    const e = list[j];
    let s = 0;
    for (let i = 0; i < e.length; i++) s += (q[i] - e[i]) ** 2;
    d.push(Math.sqrt(s / e.length));
  }
  d.sort((a, b) => a - b);
  return d.length ? d[Math.min(k, d.length) - 1] : Infinity;
}

/**
 * Out-of-distribution score of an image embedding: over training datasets, the smallest ratio of
 * the distance to the dataset's k-th nearest training image to that dataset's radius. Around 1 or
 * below is like some training dataset; higher is stranger. `among` limits it to those datasets (the
 * nearest of them; '' and Infinity when the statistics hold none of them).
 */
export function oodScore(embedding: ArrayLike<number>, ood: OodStats, among?: ReadonlySet<string>): { score: number; nearest: string } {
  const q = standardise(embedding, ood.mean, ood.std);
  let best = Infinity, nearest = '';
  for (const [name, list] of decodeBank(ood)) {
    if (among && !among.has(name)) continue;
    const v = kthNearest(q, list, ood.k) / (ood.radius[name] ?? 1);
    if (v < best) {
      best = v;
      nearest = name;
    }
  }
  return { score: best, nearest };
}

/**
 * ln of the k-NN distance ratio (oodScore) from the pooled embedding to the nearest of the given
 * training sets (those that label a structure): about 0 or below for an image like theirs (never
 * below LN_NEAR_FLOOR), large for another kind of image; 0 when the statistics hold none of them or
 * the embedding is empty.
 */
export function lnDistanceToSets(embedding: ArrayLike<number>, ood: OodStats, sets: readonly string[]): number {
  if (!embedding.length) return 0;
  const { score } = oodScore(embedding, ood, new Set(sets));
  if (!Number.isFinite(score)) return 0;
  return score > 0 ? Math.max(LN_NEAR_FLOOR, Math.log(score)) : LN_NEAR_FLOOR;
}

/**
 * The nearest an image counts as lying to a structure's sets: the fitted weight is linear only over
 * the distances the fit saw (the smallest over every val and test image of the built-in model is
 * -1.14), so an image nearer than that (a copy of a training image, say) gains no more presence.
 */
export const LN_NEAR_FLOOR = -1.5;

/**
 * A prompt's calibrated presence as served: the scaling of the network that answered (a specialist
 * with scores of its own, else the model's), with the distance to the structure's training sets
 * where that scaling weighs it (`sets`: the structure's datasets; none for a prompt outside the vocabulary).
 */
export function calibratedPresence(cal: Calibration, network: string | undefined, z: number, embedding: ArrayLike<number>, sets: readonly string[] | undefined): number {
  const scaling: PresenceScaling = (network ? cal.specialist_scores?.[network]?.presence : undefined) ?? cal.presence;
  const lnNear = scaling.near !== undefined && sets && cal.ood ? lnDistanceToSets(embedding, cal.ood, sets) : 0;
  return presenceProbability(z, scaling, lnNear);
}

/**
 * Fits p = sigmoid(w . x + b) to 0/1 targets (logistic regression on a few features): Newton steps
 * on the log loss with the same small ridge as fitPlatt, halved until the loss falls; w starts at
 * (1, 0, ...), b at 0. Returns w and b.
 */
export function fitLogistic(x: number[][], y: number[], iters = 100): { w: number[]; b: number } {
  const k = (x[0]?.length ?? 0) + 1; // the features and the bias
  const row = (i: number) => [...x[i], 1];
  const lossAt = (t: number[]) => {
    let s = 0;
    for (let i = 0; i < x.length; i++) {
      const r = row(i);
      const p = Math.min(Math.max(sigmoid(r.reduce((a, v, j) => a + v * t[j], 0)), 1e-12), 1 - 1e-12);
      s -= y[i] * Math.log(p) + (1 - y[i]) * Math.log(1 - p);
    }
    return s + 1e-4 * t.reduce((a, v) => a + v * v, 0);
  };
  let t: number[] = Array.from({ length: k }, (_, j) => (j === 0 && k > 1 ? 1 : 0));
  let cur = lossAt(t);
  for (let it = 0; it < iters; it++) {
    const g = t.map((v) => 2e-4 * v);
    const h = t.map((_, a) => t.map((__, b) => (a === b ? 2e-4 : 0)));
    for (let i = 0; i < x.length; i++) {
      const r = row(i);
      const p = sigmoid(r.reduce((a, v, j) => a + v * t[j], 0));
      const w = p * (1 - p);
      for (let a = 0; a < k; a++) {
        g[a] += (p - y[i]) * r[a];
        for (let b = 0; b < k; b++) h[a][b] += w * r[a] * r[b];
      }
    }
    const d = solve(h, g);
    if (!d) break;
    let step = 1, next = lossAt(t.map((v, j) => v - d[j]));
    while (next > cur && step > 1e-4) {
      step /= 2;
      next = lossAt(t.map((v, j) => v - step * d[j]));
    }
    if (next > cur) break;
    t = t.map((v, j) => v - step * d[j]);
    const done = cur - next < 1e-10 * Math.max(1, cur);
    cur = next;
    if (done) break;
  }
  return { w: t.slice(0, k - 1), b: t[k - 1] };
}

/** Solves the small symmetric system h d = g by Gaussian elimination with partial pivoting; undefined when singular. */
function solve(h: number[][], g: number[]): number[] | undefined {
  const n = g.length, m = h.map((r, i) => [...r, g[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    if (!(Math.abs(m[p][c]) > 1e-12)) return undefined;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c] / m[c][c];
      for (let j = c; j <= n; j++) m[r][j] -= f * m[c][j];
    }
  }
  return m.map((r, i) => r[n] / r[i]);
}

/** Fits p = sigmoid(a z + b) to 0/1 (or soft) targets: a one-feature fitLogistic (Newton steps on the ridged log loss). */
export function fitPlatt(z: number[], y: number[], iters = 100): { a: number; b: number } {
  const { w, b } = fitLogistic(z.map((v) => [v]), y, iters);
  return { a: w[0], b };
}

/** The temperature T minimising the pixel log loss of sigmoid(z / T), by golden-section search on log T. */
export function fitTemperature(z: number[], y: number[]): number {
  const nll = (t: number) => {
    let s = 0;
    for (let i = 0; i < z.length; i++) {
      const p = Math.min(Math.max(sigmoid(z[i] / t), 1e-7), 1 - 1e-7);
      s -= y[i] ? Math.log(p) : Math.log(1 - p);
    }
    return s;
  };
  let lo = Math.log(0.05), hi = Math.log(20);
  const g = (Math.sqrt(5) - 1) / 2;
  let c = hi - g * (hi - lo), d = lo + g * (hi - lo);
  for (let it = 0; it < 60; it++) {
    if (nll(Math.exp(c)) < nll(Math.exp(d))) hi = d;
    else lo = c;
    c = hi - g * (hi - lo);
    d = lo + g * (hi - lo);
  }
  return Math.exp((lo + hi) / 2);
}
