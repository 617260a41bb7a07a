import type { FloatGrid } from '../image/raster.js';
import { letterbox, letterboxGeometry, mapGrid } from '../image/resize.js';
import type { SegmentationModel } from '../models/model.js';
import { dice, seededRandom } from '../stats.js';
import { checkpoint, yieldTurn } from '../pipeline/cancel.js';
import { keepLargestComponent } from '../image/mask-stats.js';
import { fitPlatt } from '../trust/calibration.js';
import { cellFeatures, DEFAULT_TRAIN, featureDims, gridOf, HEAD_GRID, positionMap, predictGrid, trainPixelHead, type FeatureMap, type PixelHead, type TrainOptions } from './pixel-head.js';
import { cellLabels, jittered, mirrored, type LabelledImage } from './support.js';

/** Cells drawn from one view of a support image (half structure where it has that many, the rest background), and from all views together: the rows' memory is bounded (65,536 x 620 floats, 160 MB). */
const CELLS_PER_VIEW = 2048;
const CELLS_IN_ALL = 65536;
/** Random variants of each support image (support.ts jittered). */
export const DEFAULT_VARIANTS = 12;
/** Heads fitted with different seeds and averaged. */
export const DEFAULT_HEADS = 3;

/** What an adaptation with the defaults does (the few-shot evaluation reuses earlier runs only of the same recipe). */
export const DEFAULT_RECIPE = { grid: HEAD_GRID, variants: DEFAULT_VARIANTS, heads: DEFAULT_HEADS, ...DEFAULT_TRAIN };

export type AdaptProgress = (done: number, total: number, message: string) => void;

export interface AdaptOptions {
  seed: number;
  /** Also learn from each support image mirrored left to right (only for structures without a side). */
  mirror?: boolean;
  /** Random variants (crop and contrast: support.ts jittered) of each support image, besides the image itself. */
  variants?: number;
  /** Heads fitted with different seeds and averaged (default 3: one head's Dice varies by several points with its seed on a handful of images). */
  heads?: number;
  /** Cells per side of the heads' grid over the model's input square (default HEAD_GRID). */
  grid?: number;
  /** How pooled embeddings are compared for familiarity (the model's standardisation where its calibration has one). */
  embed?: Embedder;
  train?: Partial<Omit<TrainOptions, 'seed' | 'onStep'>>;
  progress?: AdaptProgress;
}

/** How the adapter's scores are read: fitted on validation images, or the plain defaults when there are none. */
export interface AdapterCalibration {
  fitted_on: 'validation' | 'none';
  /** probability = sigmoid((logit - bias) / temperature) */
  temperature: number;
  bias: number;
  /** Pixel probability threshold of the mask (the one that maximised mean validation Dice). */
  mask_threshold: number;
  /** Keep only the mask's largest connected component (chosen when it raised mean validation Dice). */
  largest_component: boolean;
  /** Presence = sigmoid(a * max logit + b) when validation images without the structure fitted it; otherwise sigmoid of the max calibrated logit. */
  presence: { a: number; b: number; fitted: boolean };
}

export interface ValidationFigures {
  images: number;
  dice_mean: number;
  dice: number[];
}

export interface AdaptOutcome {
  /** The heads fitted (with different seeds); the adapter's logits are their mean. */
  heads: PixelHead[];
  /** Pooled embeddings of the support images, and the distance from them past which an image is unfamiliar (null: not judged). */
  familiarity: { embeddings: Float32Array[]; threshold: number | null };
  calibration: AdapterCalibration;
  validation: ValidationFigures | null;
  /** Support cells the head was fitted on (structure / background). */
  cells: { structure: number; background: number };
  seconds: number;
}

/** The model's input square for an image, the maps its encoder makes of it, and its pooled embedding. */
async function mapsOf(model: SegmentationModel, img: LabelledImage['image']): Promise<{ maps: FeatureMap[]; pooled: Float32Array }> {
  const size = model.entry.input.size;
  const f = await model.encodeImage(letterbox(img, size).pixels);
  return { maps: model.featureMaps!(f), pooled: f.pooled };
}

/** How pooled embeddings are compared: standardised as the model's own out-of-distribution statistics do (calibration ood mean and std), or as they are. */
export type Embedder = (pooled: Float32Array) => ArrayLike<number>;

function euclidean(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

/** How far an image's pooled embedding lies from the nearest support image's. */
export function supportDistance(support: Float32Array[], pooled: Float32Array, embed: Embedder = (x) => x): number {
  const q = embed(pooled);
  return Math.min(...support.map((s) => euclidean(embed(s), q)));
}

/**
 * The distance past which an image is unlike every support image: 1.25 times the farthest validation
 * image's distance (or, without validation images, the farthest support image's from the others);
 * null with a single support image and no validation images (nothing to measure it by).
 */
function familiarityThreshold(support: Float32Array[], validation: Float32Array[], embed?: Embedder): number | null {
  const far = validation.length
    ? Math.max(...validation.map((v) => supportDistance(support, v, embed)))
    : support.length > 1
      ? Math.max(...support.map((s, i) => supportDistance(support.filter((_, j) => j !== i), s, embed)))
      : null;
  return far === null ? null : 1.25 * Math.max(far, 1e-3);
}

/** What a head on a G x G grid reads: the encoder's maps and the cells' positions. */
export const headMaps = (maps: FeatureMap[], G: number): FeatureMap[] => [...maps, positionMap(G)];

/** The adapter's logits over an image at its own size from the encoder's maps: its heads' mean on their grid, mapped as the model's masks are. */
export async function adapterLogits(model: SegmentationModel, heads: PixelHead[], encoderMaps: FeatureMap[], width: number, height: number): Promise<FloatGrid> {
  const size = model.entry.input.size;
  const b = letterboxGeometry(width, height, size);
  const G = gridOf(heads[0].inputs);
  if (heads.some((h) => gridOf(h.inputs) !== G)) throw new Error('the heads of an adapter must share one grid');
  const maps = headMaps(encoderMaps, G);
  const mean = new Float32Array(G * G);
  for (const h of heads) {
    const g = predictGrid(h, maps);
    for (let q = 0; q < mean.length; q++) mean[q] += g[q] / heads.length;
  }
  const grid = { width: G, height: G, data: mean };
  await yieldTurn();
  return mapGrid(grid, size, width, height, { left: b.left, top: b.top, scaleX: b.innerW / width, scaleY: b.innerH / height });
}

/**
 * Teaches the model a structure from labelled images: the frozen image encoder's features of each
 * support image, a small head fitted on them (pixel-head.ts), then its scores calibrated on the
 * validation images when there are any. Deterministic for a seed.
 */
export async function adaptHead(model: SegmentationModel, support: LabelledImage[], validation: LabelledImage[], o: AdaptOptions): Promise<AdaptOutcome> {
  const t0 = performance.now();
  if (!model.featureMaps) throw new Error(`model ${model.entry.id} does not offer its image features to adapters`);
  await model.load();
  const rnd = seededRandom(o.seed ^ 0x5eed);
  const jitter = seededRandom(o.seed ^ 0x1177);
  const views = (o.mirror ? support.flatMap((s) => [s, mirrored(s)]) : support).flatMap((s) => [s, ...Array.from({ length: o.variants ?? DEFAULT_VARIANTS }, (_, k) => jittered(s, jitter, k + 1))]);
  const train = { ...DEFAULT_TRAIN, ...o.train };
  const nHeads = o.heads ?? DEFAULT_HEADS;
  const total = views.length + nHeads * train.steps + validation.length;
  const G = o.grid ?? HEAD_GRID;
  const perView = Math.min(CELLS_PER_VIEW, Math.floor(CELLS_IN_ALL / views.length));
  let inputs: PixelHead['inputs'] | undefined;
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  let nPos = 0, nNeg = 0;
  const embeddings: Float32Array[] = [];
  for (const [k, v] of views.entries()) {
    const { maps: encoderMaps, pooled } = await mapsOf(model, v.image);
    const maps = headMaps(encoderMaps, G);
    if (support.includes(v)) embeddings.push(pooled);
    inputs ??= maps.map(({ name, channels, height, width }) => ({ name, channels, height, width }));
    const cl = cellLabels(v.mask, v.image.width, v.image.height, model.entry.input.size, G);
    const pos: number[] = [], neg: number[] = [];
    for (let q = 0; q < cl.valid.length; q++) if (cl.valid[q]) (cl.share[q] >= 0.5 ? pos : neg).push(q);
    const take = (a: number[], n: number) => {
      // a seeded partial shuffle: the first n of a random order
      for (let i = 0; i < Math.min(n, a.length); i++) {
        const j = i + Math.floor(rnd() * (a.length - i));
        [a[i], a[j]] = [a[j], a[i]];
      }
      return a.slice(0, n);
    };
    const p = take(pos, perView / 2);
    const n = take(neg, perView - p.length);
    const cells = [...p, ...n];
    rows.push(cellFeatures(maps, cells));
    for (const q of cells) labels.push(cl.share[q] >= 0.5 ? 1 : 0);
    nPos += p.length;
    nNeg += n.length;
    o.progress?.(k + 1, total, `features of ${v.name}`);
    await checkpoint();
  }
  if (!inputs) throw new Error('no support images');
  const D = featureDims(inputs);
  const x = new Float32Array(labels.length * D);
  let off = 0;
  for (const r of rows) {
    x.set(r, off);
    off += r.length;
  }
  const y = Uint8Array.from(labels);
  const heads: PixelHead[] = [];
  for (let h = 0; h < nHeads; h++) {
    const done = views.length + h * train.steps;
    heads.push(
      await trainPixelHead(inputs, x, y, {
        ...train,
        seed: o.seed * 7919 + h,
        onStep: async (step) => {
          if (step % 20 === 0 || step === train.steps) o.progress?.(done + step, total, `fitting head ${h + 1} of ${nHeads} (step ${step} of ${train.steps})`);
          await checkpoint();
        },
      }),
    );
  }
  const { calibration, validation: figures, pooled } = await calibrate(model, heads, validation, (k, name) => o.progress?.(views.length + nHeads * train.steps + k, total, `validating on ${name}`));
  return { heads, familiarity: { embeddings, threshold: familiarityThreshold(embeddings, pooled, o.embed) }, calibration, validation: figures, cells: { structure: nPos, background: nNeg }, seconds: (performance.now() - t0) / 1000 };
}

/** The logit at which the calibrated probability reaches p. */
export const logitCut = (c: AdapterCalibration, p: number): number => c.bias + c.temperature * Math.log(p / (1 - p));

/** The adapter's mask from its logits at the image size: the calibrated threshold, and the largest component where calibration chose it. */
export function adapterMask(logits: FloatGrid, c: AdapterCalibration): Uint8Array {
  const cut = logitCut(c, c.mask_threshold);
  const m = Uint8Array.from(logits.data, (z) => (z >= cut ? 1 : 0));
  if (c.largest_component) keepLargestComponent(m, logits.width, logits.height);
  return m;
}

/**
 * Temperature and bias by Platt's method on validation pixels, the mask threshold that maximises
 * their mean Dice, and presence from the maximum logit where validation images without the
 * structure make it fittable. Without validation images every value is the plain default.
 */
async function calibrate(model: SegmentationModel, heads: PixelHead[], validation: LabelledImage[], tick: (k: number, name: string) => void): Promise<{ calibration: AdapterCalibration; validation: ValidationFigures | null; pooled: Float32Array[] }> {
  const plain: AdapterCalibration = { fitted_on: 'none', temperature: 1, bias: 0, mask_threshold: 0.5, largest_component: false, presence: { a: 1, b: 0, fitted: false } };
  if (!validation.length) return { calibration: plain, validation: null, pooled: [] };
  const per: { logits: FloatGrid; mask: Uint8Array; max: number }[] = [];
  const pooledAll: Float32Array[] = [];
  for (const [k, v] of validation.entries()) {
    const { maps, pooled } = await mapsOf(model, v.image);
    pooledAll.push(pooled);
    const logits = await adapterLogits(model, heads, maps, v.image.width, v.image.height);
    let max = -Infinity;
    for (const z of logits.data) if (z > max) max = z;
    per.push({ logits, mask: v.mask, max });
    tick(k + 1, v.name);
  }
  // Platt on a fixed sample of pixels (every image weighs the same)
  const zs: number[] = [], ys: number[] = [];
  const rnd = seededRandom(17);
  for (const p of per) {
    for (let s = 0; s < 4000; s++) {
      const q = Math.floor(rnd() * p.mask.length);
      zs.push(p.logits.data[q]);
      ys.push(p.mask[q]);
    }
  }
  const { a, b } = fitPlatt(zs, ys);
  // probability = sigmoid(a z + b) = sigmoid((z - bias) / temperature)
  const temperature = a > 1e-3 ? 1 / a : 1;
  const bias = a > 1e-3 ? -b / a : 0;
  const present = per.filter((p) => p.mask.some((v) => v));
  const maskOf = (p: (typeof per)[number], th: number, lcc: boolean) => adapterMask(p.logits, { ...plain, temperature, bias, mask_threshold: th, largest_component: lcc });
  const meanDice = (th: number, lcc: boolean) => present.reduce((s, p) => s + dice(maskOf(p, th, lcc), p.mask), 0) / Math.max(1, present.length);
  let best = { th: 0.5, lcc: false, dice: -1 };
  for (const lcc of [false, true]) {
    for (let th = 0.1; th <= 0.901; th += 0.05) {
      const d = meanDice(th, lcc);
      if (d > best.dice + 1e-9) best = { th: Math.round(th * 100) / 100, lcc, dice: d };
    }
  }
  const diceEach = present.map((p) => dice(maskOf(p, best.th, best.lcc), p.mask));
  const absent = per.filter((p) => !p.mask.some((v) => v));
  const presence = absent.length && present.length ? { ...fitPlatt(per.map((p) => p.max), per.map((p) => (p.mask.some((v) => v) ? 1 : 0))), fitted: true } : { a: 1 / temperature, b: -bias / temperature, fitted: false };
  return {
    calibration: { fitted_on: 'validation', temperature, bias, mask_threshold: best.th, largest_component: best.lcc, presence },
    pooled: pooledAll,
    validation: { images: validation.length, dice_mean: diceEach.reduce((s, d) => s + d, 0) / Math.max(1, diceEach.length), dice: diceEach },
  };
}
