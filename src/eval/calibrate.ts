import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeImage } from '../core/image/decode.js';
import { segment } from '../core/pipeline/segment.js';
import { fitPlatt, fitTemperature, kthNearest, logit, oodScore, standardise, type Calibration } from '../core/trust/calibration.js';
import { sigmoid } from '../core/trust/scores.js';
import type { ServiceContext } from '../service/context.js';
import { dice, percentile, seededRandom } from './metrics.js';
import { caseImagePath, readCaseMask } from './dataset-layout.js';

export interface CalibrateOptions {
  modelId?: string;
  dataRoot: string;
  split?: 'val' | 'train';
  limitPerDataset?: number;
  /** Train-split images per dataset for the out-of-distribution statistics. */
  trainLimit?: number;
  pixelsPerCase?: number;
  progress?: (done: number, total: number, label: string) => void;
}

const LEVELS = ['0.8', '0.9', '0.95'];
const GRID = Array.from({ length: 99 }, (_, i) => (i + 1) / 100);

/**
 * Fits the model's calibration on the val split: pixel temperature, presence and quality Platt
 * scaling, per-dataset embedding statistics for out-of-distribution scoring, verdict thresholds,
 * and per-structure conformal thresholds (conformal risk control on 1 - recall).
 */
export async function fitCalibration(ctx: ServiceContext, o: CalibrateOptions): Promise<Calibration> {
  const model = ctx.pipeline.registry.get(o.modelId);
  const entry = model.entry;
  const split = o.split ?? 'val';
  const limit = o.limitPerDataset ?? 40;
  const pixels = o.pixelsPerCase ?? 1500;
  const vocab = ctx.pipeline.vocabulary;
  const index = JSON.parse(readFileSync(path.join(o.dataRoot, 'index.json'), 'utf8')) as { id: string }[];
  const rnd = seededRandom(11);
  const pz: number[] = [], py: number[] = [];
  const presZ: number[] = [], presY: number[] = [];
  const present: { slug: string; qualityLogit: number; dice: number; uncertain: number; recallAt: number[]; probs?: undefined }[] = [];
  const embeds = new Map<string, Float32Array[]>();
  const plan = index.map((d) => {
    const splits = JSON.parse(readFileSync(path.join(o.dataRoot, d.id, 'splits.json'), 'utf8')) as Record<string, string[]>;
    return { id: d.id, cases: (splits[split] ?? []).slice(0, limit) };
  });
  const total = plan.reduce((s, p) => s + p.cases.length, 0);
  let done = 0, cases = 0;
  for (const { id, cases: list } of plan) {
    const meta = JSON.parse(readFileSync(path.join(o.dataRoot, id, 'dataset.json'), 'utf8')) as { structures: { slug: string }[]; image_ext?: string[] };
    const region = vocab.data.datasets.find((d) => d.id === id)?.region;
    const others = vocab.data.structures.filter((s) => s.region !== region);
    for (const [ci, c] of list.entries()) {
      const image = await decodeImage(await readFile(caseImagePath(o.dataRoot, id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const prompts = meta.structures.map((s) => vocab.bySlug.get(s.slug)?.name ?? s.slug);
      const neg = [others[Math.floor(rnd() * others.length)].name, others[Math.floor(rnd() * others.length)].name, vocab.data.nonsense.train[ci % vocab.data.nonsense.train.length]];
      const res = await segment(ctx.pipeline, { image, prompts: [...prompts, ...neg], modelId: entry.id, calibrated: false });
      cases++;
      embeds.set(id, [...(embeds.get(id) ?? []), res.image.embedding]);
      const { width: w, height: h } = res;
      for (const [k, s] of meta.structures.entries()) {
        const gt = await readCaseMask(o.dataRoot, id, s.slug, c, { width: w, height: h });
        const gsum = gt.reduce((a, v) => a + v, 0);
        const r = res.results[k];
        presZ.push(logit(r.presenceRaw));
        presY.push(gsum > 0 ? 1 : 0);
        if (gsum === 0) continue;
        for (let j = 0; j < pixels; j++) {
          const i = Math.floor(rnd() * w * h);
          pz.push(logit(r.probability[i]));
          py.push(gt[i]);
        }
        const recallAt = GRID.map(() => 0);
        for (let i = 0; i < gt.length; i++) {
          if (!gt[i]) continue;
          const p = r.probability[i];
          for (let g = 0; g < GRID.length && GRID[g] <= p; g++) recallAt[g]++;
        }
        present.push({ slug: s.slug, qualityLogit: logit(r.predictedQuality), dice: dice(r.mask, gt), uncertain: r.uncertainty.uncertainFraction, recallAt: recallAt.map((v) => v / gsum) });
      }
      for (let k = prompts.length; k < res.results.length; k++) {
        presZ.push(logit(res.results[k].presenceRaw));
        presY.push(0);
      }
      o.progress?.(++done, total, id);
    }
  }
  // The recall grid above was taken on uncalibrated probabilities p = sigmoid(z); with temperature T
  // the calibrated probability is sigmoid(z / T), so a calibrated threshold t maps to sigmoid(T * logit(t)).
  const T = fitTemperature(pz, py);
  const presence = fitPlatt(presZ, presY);
  const quality = fitPlatt(present.map((p) => p.qualityLogit), present.map((p) => p.dice));
  // out-of-distribution statistics: per training dataset, from train-split images (the model's own
  // training distribution); the threshold comes from val images, which the statistics never saw
  const dim = embeds.values().next().value?.[0]?.length ?? 0;
  const trainEmbeds = dim ? await embedSplit(ctx, entry.id, o.dataRoot, plan.map((p) => p.id), 'train', o.trainLimit ?? 60, o.progress) : new Map<string, Float32Array[]>();
  // k-NN in the standardised embedding space: each dataset's radius is the 95th percentile of its
  // own training images' leave-one-out distance to their k-th neighbour
  const all = [...trainEmbeds.values()].flat();
  const mean = Array.from({ length: dim }, (_, i) => all.reduce((s, e) => s + e[i], 0) / all.length);
  const std = Array.from({ length: dim }, (_, i) => Math.sqrt(all.reduce((s, e) => s + (e[i] - mean[i]) ** 2, 0) / all.length + 1e-6));
  const k = 3;
  const bank: Record<string, string> = {};
  const radius: Record<string, number> = {};
  for (const [id, list] of trainEmbeds) {
    const z = list.map((e) => standardise(e, mean, std));
    radius[id] = percentile(z.map((q, i) => kthNearest(q, z, k, i)), 95);
    const flat = new Float32Array(z.length * dim);
    z.forEach((q, i) => flat.set(q, i * dim));
    bank[id] = Buffer.from(flat.buffer).toString('base64');
  }
  const oodTmp = { mean, std, k, bank, radius, threshold: 1 };
  // val images (never in the bank) fix the threshold: their 99th percentile (at least 1), plus 10%
  const scores = dim ? [...embeds.values()].flat().map((e) => oodScore(e, oodTmp).score) : [];
  const oodThreshold = dim ? Math.max(1, percentile(scores, 99)) * 1.1 : 0;
  // verdict thresholds: the quality and uncertainty cut-offs that best separate failures (Dice < 0.7) on val
  const fail: number[] = present.map((p) => (p.dice < 0.7 ? 1 : 0));
  const calQ = present.map((p) => sigmoid(quality.a * p.qualityLogit + quality.b));
  const youden = (score: number[], higherIsFailure: boolean, candidates: number[]) => {
    let best = candidates[0], bestJ = -Infinity;
    const P = fail.reduce((s, v) => s + v, 0), N = fail.length - P;
    for (const c of candidates) {
      let tp = 0, fp = 0;
      score.forEach((s, i) => {
        const flagged = higherIsFailure ? s > c : s < c;
        if (flagged && fail[i]) tp++;
        if (flagged && !fail[i]) fp++;
      });
      const j = (P ? tp / P : 0) - (N ? fp / N : 0);
      if (j > bestJ) {
        bestJ = j;
        best = c;
      }
    }
    return best;
  };
  const qualityThreshold = youden(calQ, false, GRID);
  const uncertainThreshold = youden(present.map((p) => p.uncertain), true, GRID);
  // conformal risk control: largest threshold whose adjusted mean miss rate stays within 1 - level
  const conformal: Record<string, Record<string, number>> = {};
  for (const slug of [...new Set(present.map((p) => p.slug))]) {
    const rows = present.filter((p) => p.slug === slug);
    const m = rows.length;
    conformal[slug] = {};
    for (const level of LEVELS) {
      const alpha = 1 - Number(level);
      let chosen = GRID[0];
      for (let g = GRID.length - 1; g >= 0; g--) {
        const risk = rows.reduce((s, r) => s + (1 - r.recallAt[g]), 0) / m;
        if ((m / (m + 1)) * risk + 1 / (m + 1) <= alpha) {
          chosen = GRID[g];
          break;
        }
      }
      // the grid is in uncalibrated probability; store the equivalent calibrated threshold
      conformal[slug][level] = Math.round(sigmoid(logit(chosen) / T) * 1e4) / 1e4;
    }
  }
  const filesHash = createHash('sha256').update(JSON.stringify(entry.files)).digest('hex');
  return {
    fitted_on: { split, cases, datasets: plan.map((p) => p.id), date: new Date().toISOString().slice(0, 10), model_files_sha256: filesHash },
    pixel_temperature: T,
    presence,
    quality,
    ...(dim ? { ood: { mean, std, k, bank, radius, threshold: oodThreshold } } : {}),
    thresholds: { presence: 0.5, quality: qualityThreshold, uncertain_fraction: uncertainThreshold },
    conformal,
  };
}

export function writeCalibration(ctx: ServiceContext, modelId: string | undefined, cal: Calibration): string {
  const entry = ctx.pipeline.registry.entry(modelId ?? ctx.pipeline.registry.defaultId);
  const file = path.join(ctx.pipeline.registry.dirOf(entry), entry.calibration ?? 'calibration.json');
  const round = (_: string, v: unknown) => (typeof v === 'number' ? Math.round(v * 1e6) / 1e6 : v);
  writeFileSync(file, JSON.stringify(cal, round, 1));
  return file;
}

/** Pooled image embeddings of the first `limit` cases of a split, per dataset (whole-image pass, no prompts decoded). */
async function embedSplit(ctx: ServiceContext, modelId: string, dataRoot: string, ids: string[], split: string, limit: number, progress?: CalibrateOptions['progress']): Promise<Map<string, Float32Array[]>> {
  const out = new Map<string, Float32Array[]>();
  let done = 0;
  const total = ids.length * limit;
  for (const id of ids) {
    const meta = JSON.parse(readFileSync(path.join(dataRoot, id, 'dataset.json'), 'utf8')) as { image_ext?: string[] };
    const splits = JSON.parse(readFileSync(path.join(dataRoot, id, 'splits.json'), 'utf8')) as Record<string, string[]>;
    const list: Float32Array[] = [];
    for (const c of (splits[split] ?? []).slice(0, limit)) {
      const image = await decodeImage(await readFile(caseImagePath(dataRoot, id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const r = await segment(ctx.pipeline, { image, prompts: [], modelId, calibrated: false });
      list.push(r.image.embedding);
      progress?.(++done, total, `${id} (${split} embeddings)`);
    }
    out.set(id, list);
  }
  return out;
}
