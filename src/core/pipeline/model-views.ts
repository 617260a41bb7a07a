import type { FloatGrid, RasterImage } from '../image/raster.js';
import { letterbox, letterboxGeometry, mapGrid, resizeRgb, roundHalfEven } from '../image/resize.js';
import { renderWindow } from '../image/dicom.js';
import { deferredGrid } from '../image/grid-sampler.js';
import type { ImageFeatures, SegmentationModel } from '../models/model.js';
import type { ModelEntry } from '../models/manifest.js';
import type { Structure } from '../vocabulary.js';
import { checkpoint } from './cancel.js';
import type { Square } from './zoom.js';
import type { PipelineContext, StageName } from './segment.js';

/**
 * How the model sees an image: whole (letterboxed to its input) or in native-scale tiles, through
 * the feature cache, and CT from DICOM through each structure's window. What every pass of one
 * request calls to run the model.
 */

/** What every model call of one request shares: the model, its stage timings, the feature-cache tally. */
export interface ModelRun {
  ctx: PipelineContext;
  model: SegmentationModel;
  entry: ModelEntry;
  timings: Record<StageName, number>;
  /** Counts a feature-cache hit (true) or miss (false). */
  hit: (h: boolean) => void;
}

/** One prompt as the model is asked it: its structure (view and window), how it is seen, its text embedding. */
export interface ViewPrompt {
  structure: Structure | undefined;
  mode: 'whole' | 'tiled';
  embed: Float32Array;
}

/** The model's answer for one prompt: logits at the image size, presence and quality logits, text-image similarity. */
export interface Look {
  logits: FloatGrid;
  presence: number;
  iou: number;
  similarity: number;
}

const now = () => performance.now();

/** Feature-cache key of a second look's crop. */
export const zoomKey = (sha: string, sq: Square) => `${sha}:zoom:${sq.left}:${sq.top}:${sq.side}`;

/**
 * Decodes prompts on one image: CT from DICOM is seen through each structure's window, thin
 * structures in native tiles, the rest whole. Looks come back in the prompts' order. With
 * `embedding`, the default view also runs whole-image (even with no whole-image prompt) and its
 * pooled embedding comes back: what the OOD score reads.
 */
export async function decodeViews(run: ModelRun, image: RasterImage, imageSha256: string, prompts: ViewPrompt[], o: { specialist?: string; embedding?: boolean } = {}): Promise<{ looks: Look[]; embedding?: Float32Array }> {
  const looks: Look[] = new Array(prompts.length);
  // CT from DICOM: each structure is seen through its own window (lung, mediastinum, ...) unless the caller set one
  const views = new Map<string, { image: RasterImage; sha: string; idx: number[] }>();
  views.set('default', { image, sha: imageSha256, idx: [] });
  prompts.forEach((p, i) => {
    const w = windowFor(run.ctx, image, p.structure);
    if (!w) {
      views.get('default')!.idx.push(i);
      return;
    }
    const key = `window:${w[0]}:${w[1]}`;
    if (!views.has(key)) {
      const data = renderWindow(image.dicom!.values!, w, image.dicom!.monochrome1);
      views.set(key, { image: { ...image, data }, sha: `${imageSha256}:${key}`, idx: [] });
    }
    views.get(key)!.idx.push(i);
  });
  let embedding: Float32Array | undefined;
  for (const [key, view] of views) {
    for (const mode of ['whole', 'tiled'] as const) {
      const idx = view.idx.filter((i) => prompts[i].mode === mode);
      const wantsEmbedding = !!o.embedding && mode === 'whole' && key === 'default';
      if (!idx.length && !wantsEmbedding) continue;
      const e = idx.map((i) => prompts[i].embed);
      const out = mode === 'whole' ? await runWhole(run, view.image, view.sha, e, o.specialist) : await runTiled(run, view.image, view.sha, e, o.specialist);
      if (wantsEmbedding) embedding = out.pooled;
      idx.forEach((i, k) => (looks[i] = out.looks[k]));
    }
  }
  return { looks, embedding };
}

/** Text embeddings of prompts, cached per model and prompt. */
export async function encodeTexts(ctx: PipelineContext, model: SegmentationModel, prompts: string[]): Promise<Float32Array[]> {
  const out: (Float32Array | undefined)[] = prompts.map((p) => ctx.textCache.get(`${model.entry.id}\u0000${p}`));
  const missing = [...new Set(prompts.filter((_, i) => !out[i]))];
  if (missing.length) {
    const enc = await model.encodeText(missing);
    missing.forEach((p, k) => ctx.textCache.set(`${model.entry.id}\u0000${p}`, enc[k]));
    prompts.forEach((p, i) => (out[i] ??= enc[missing.indexOf(p)]));
  }
  return out as Float32Array[];
}

/** The model's features of the whole image (letterboxed), from the feature cache when it has them. */
export async function wholeImageFeatures(run: ModelRun, image: RasterImage, sha: string): Promise<ImageFeatures> {
  return features(run, `${run.entry.id}:whole:${sha}`, () => letterbox(image, run.entry.input.size).pixels);
}

async function features(run: ModelRun, key0: string, pixels: () => Uint8Array, specialist?: string): Promise<ImageFeatures> {
  await checkpoint(); // every image-encoder pass is a point where a stopped request ends
  const { ctx, timings } = run;
  const key = specialist ? `${key0}:specialist:${specialist}` : key0;
  const cached = ctx.featureCache.get(key);
  if (cached) {
    run.hit(true);
    return cached;
  }
  run.hit(false);
  let t = now();
  const px = pixels();
  timings.preprocess += now() - t;
  t = now();
  const f = await run.model.encodeImage(px, specialist);
  timings.encode_image += now() - t;
  ctx.featureCache.set(key, f);
  return f;
}

/** The whole image, letterboxed to the model's input: looks for the embeddings `e` (none: only the pooled embedding). */
export async function runWhole(run: ModelRun, image: RasterImage, sha: string, e: Float32Array[], specialist?: string): Promise<{ pooled: Float32Array; looks: Look[] }> {
  const { entry, timings } = run;
  const { size } = entry.input;
  // the geometry is all a cached image needs; the pixels are letterboxed only on a cache miss
  const b = letterboxGeometry(image.width, image.height, size);
  const f = await features(run, `${entry.id}:whole:${sha}`, () => letterbox(image, size).pixels, specialist);
  if (!e.length) return { pooled: f.pooled, looks: [] };
  let t = now();
  const out = await run.model.decode(f, e);
  timings.decode_mask += now() - t;
  t = now();
  const place = { left: b.left, top: b.top, scaleX: b.innerW / image.width, scaleY: b.innerH / image.height };
  const looks: Look[] = [];
  for (const [k, g] of out.maskLogits.entries()) {
    await checkpoint(); // each grid is mapped to the full image
    // made when first read: a prompt found absent, or a mask thresholded cell by cell, never needs all of it
    looks.push({ logits: deferredGrid({ grid: g, gridSpan: size, place }, image.width, image.height), presence: out.presenceLogit[k], iou: out.iouLogit[k], similarity: out.similarity[k] });
  }
  timings.postprocess += now() - t;
  return { pooled: f.pooled, looks };
}

/** The display window a prompt's structure calls for on a CT image whose window the caller did not set. */
export function windowFor(ctx: PipelineContext, image: RasterImage, structure: Structure | undefined): [number, number] | undefined {
  const d = image.dicom;
  if (!d || !d.values || d.modality !== 'CT' || d.windowSource === 'request' || !structure?.window) return undefined;
  return ctx.vocabulary.data.windows[structure.window];
}

/** Tile origins covering n pixels with tiles of `size` every `stride` (the last one flush with the end). */
export function tileOrigins(n: number, size: number, stride: number): number[] {
  if (n <= size) return [0];
  const o: number[] = [];
  for (let v = 0; v < n - size; v += stride) o.push(v);
  o.push(n - size);
  return [...new Set(o)].sort((a, b) => a - b);
}

/** The image at native scale in overlapping tiles of the model's input size; logits and scores averaged over tiles. */
async function runTiled(run: ModelRun, image: RasterImage, sha: string, e: Float32Array[], specialist?: string): Promise<{ pooled?: Float32Array; looks: Look[] }> {
  const { entry, timings } = run;
  const { size, tile } = entry.input;
  let t = now();
  // native scale, at most native_max_side on the longer side, as in training, then enlarged
  // `tile.upscale` times where the manifest asks for it (a model trained on enlarged crops)
  let native = image;
  const longest = Math.max(image.width, image.height);
  const s = Math.min(1, tile.native_max_side / longest) * (tile.upscale ?? 1);
  if (s !== 1) {
    const w = roundHalfEven(image.width * s), h = roundHalfEven(image.height * s);
    native = { width: w, height: h, data: resizeRgb(image, w, h), format: image.format };
  }
  const W = Math.max(native.width, size), H = Math.max(native.height, size);
  const n = e.length;
  const acc = Array.from({ length: n }, () => new Float32Array(W * H));
  const cnt = new Float32Array(W * H);
  const pres = new Array<number>(n).fill(0), iou = new Array<number>(n).fill(0), sim = new Array<number>(n).fill(0);
  const ys = tileOrigins(H, size, tile.stride), xs = tileOrigins(W, size, tile.stride);
  timings.preprocess += now() - t;
  for (const ty of ys) {
    for (const tx of xs) {
      const makePixels = () => {
        const px = new Uint8Array(size * size * 3);
        for (let y = 0; y < size; y++) {
          const sy = ty + y;
          if (sy >= native.height) break;
          const w = Math.max(0, Math.min(size, native.width - tx));
          px.set(native.data.subarray((sy * native.width + tx) * 3, (sy * native.width + tx + w) * 3), y * size * 3);
        }
        return px;
      };
      const f = await features(run, `${entry.id}:tile:${ty}:${tx}:${sha}`, makePixels, specialist);
      t = now();
      const out = await run.model.decode(f, e);
      timings.decode_mask += now() - t;
      t = now();
      for (let k = 0; k < n; k++) {
        const g = mapGrid(out.maskLogits[k], size, size, size, { left: 0, top: 0, scaleX: 1, scaleY: 1 });
        const a = acc[k];
        for (let y = 0; y < size; y++) {
          const row = (ty + y) * W + tx;
          for (let x = 0; x < size; x++) a[row + x] += g.data[y * size + x];
        }
        pres[k] += out.presenceLogit[k];
        iou[k] += out.iouLogit[k];
        sim[k] += out.similarity[k];
      }
      for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) cnt[(ty + y) * W + tx + x] += 1;
      timings.postprocess += now() - t;
    }
  }
  t = now();
  const tiles = ys.length * xs.length;
  const looks = acc.map((a, k): Look => {
    const nat = new Float32Array(native.width * native.height);
    for (let y = 0; y < native.height; y++) for (let x = 0; x < native.width; x++) nat[y * native.width + x] = a[y * W + x] / cnt[y * W + x];
    const grid = { width: native.width, height: native.height, data: nat };
    const logits = native === image ? grid : mapGrid(grid, native.width, image.width, image.height, { left: 0, top: 0, scaleX: native.width / image.width, scaleY: native.height / image.height });
    return { logits, presence: pres[k] / tiles, iou: iou[k] / tiles, similarity: sim[k] / tiles };
  });
  timings.postprocess += now() - t;
  return { looks };
}
