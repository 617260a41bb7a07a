import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeImage } from '../core/image/decode.js';
import { assessImage, keepLargestComponent, probabilityMap, segmentWithModel as segment, type SegmentRequest } from '../core/pipeline/segment.js';
import { fitLogistic, fitPlatt, fitTemperature, kthNearest, lnDistanceToSets, logit, modelFilesFingerprint, oodScore, platt, presenceProbability, standardise, type Calibration, type OodStats, type PresenceScaling } from '../core/trust/calibration.js';
import { sigmoid } from '../core/trust/scores.js';
import { redrawingCandidates, redrawingSpecialists, type ModelEntry } from '../core/models/manifest.js';
import type { Vocabulary } from '../core/vocabulary.js';
import type { ServiceContext } from '../service/context.js';
import { dice, percentile, seededRandom } from './metrics.js';
import { caseImagePath, readCaseMask, readDatasetIds, readDatasetMeta, readSplits, spread } from './dataset-layout.js';

export interface CalibrateOptions {
  modelId?: string;
  dataRoot: string;
  split?: 'val' | 'train';
  /** At most this many val cases per dataset, spread over the split (default: every val case). */
  limitPerDataset?: number;
  /** Train-split images per dataset for the out-of-distribution statistics. */
  trainLimit?: number;
  pixelsPerCase?: number;
  progress?: (done: number, total: number, label: string) => void;
}

const LEVELS = ['0.8', '0.9', '0.95'];
/** Raw-probability thresholds tried for conformal masks, ascending; down to 1e-4 so that a high recall level is reachable (the mask then grows toward the whole image, as it must). */
const GRID = [1e-4, 3e-4, 1e-3, 3e-3, ...Array.from({ length: 99 }, (_, i) => (i + 1) / 100)];
/** Raw-probability mask thresholds tried per structure for the Dice-optimal mask: 0.05, 0.075, ..., 0.95 (index 18 is 0.5). */
const MASK_STEP = 0.025;
const MASK_GRID = Array.from({ length: 37 }, (_, i) => 0.05 + MASK_STEP * i);
const MASK_BASE = 18;
/** A serving choice fitted on val (specialist, second look, image TTA, mask threshold, largest component) must raise a structure's mean val Dice by this much. */
const MIN_GAIN = 0.005;

/** The cases a calibration reads: per dataset of the data root's index, its split's cases (at most `limit`, spread over the split). */
type CasePlan = { id: string; cases: string[] }[];

/** What one pass over the val cases collects, with the serving choices already made. */
export interface ValSamples {
  cases: number;
  /** Sampled pixels of present structures: uncalibrated logit and label. */
  pixelZ: number[];
  pixelY: number[];
  /** Every prompt asked: raw presence logit and whether the structure is there (the case's own absent structures, other regions' structures, nonsense). */
  presenceZ: number[];
  presenceY: number[];
  /** The network whose scores each presence sample is: '' the model's own, else a specialist that answers for its structures altogether. */
  presenceNet: string[];
  /** ln of the distance from the image to the training sets that label the prompt's structure (lnDistanceToSets; 0 for nonsense or without statistics). */
  presenceNear: number[];
  /** One row per present structure of a case. */
  present: PresentRow[];
}

export interface PresentRow {
  slug: string;
  /** The network whose scores these are ('' the model's own; see presenceNet). */
  net: string;
  qualityLogit: number;
  /** Dice of the mask as it will be served (updated once the mask choices are made). */
  dice: number;
  diceAt: number[];
  diceLargest: number;
  uncertain: number;
  recallAt: number[];
}

/**
 * What every request of the calibration shares: the model, raw scores, and the out-of-distribution
 * statistics that tell which training set an image lies nearest (fitted before any prompt is asked,
 * so that a structure two networks answer for is answered by the one that will serve it).
 */
type Ask = Required<Pick<SegmentRequest, 'modelId' | 'calibrated' | 'nearestSetStatistics'>>;

/** The per-structure passes the calibration turns on where they raise val Dice: specialist, second look, image copies. */
interface ServingPasses {
  withSpecialist: boolean;
  specialist: string[];
  /** Structures that several specialists may redraw: the one chosen. */
  specialistNames: Record<string, string>;
  specialistGain: Record<string, SpecialistGain>;
  zoom: string[];
  zoomGain: Record<string, { mean: number; n: number }>;
  ttaImage: Record<string, number>;
  ttaImageGain: Record<string, { n: number; gain: Record<string, number> }>;
}

/**
 * Fits the model's calibration on the val split: the serving passes per structure, pixel
 * temperature, presence and quality Platt scaling, mask thresholds and largest-component choices,
 * per-dataset statistics for out-of-distribution scoring, verdict thresholds, and per-structure
 * conformal thresholds (conformal risk control on 1 - recall).
 */
export async function fitCalibration(ctx: ServiceContext, o: CalibrateOptions): Promise<Calibration> {
  const entry = ctx.pipeline.registry.get(o.modelId).entry;
  const split = o.split ?? 'val';
  const { plan, skipped } = casePlan(ctx.pipeline.vocabulary, o.dataRoot, split, o.limitPerDataset ?? Infinity);
  if (!plan.length) throw new Error(`no dataset under ${o.dataRoot} has only structures the model knows (${skipped.map((d) => `${d.dataset}: ${d.unknown.join(', ')}`).join('; ') || 'index.json lists none'})`);
  // the out-of-distribution statistics first: which training set an image lies nearest routes some structures
  const trainPlan = plan.map((p) => ({ id: p.id, cases: spread(readSplits(o.dataRoot, p.id).train ?? [], o.trainLimit ?? 60) }));
  const train = await embedCases(ctx, entry.id, o.dataRoot, trainPlan, 'train', o.progress);
  const val = await embedCases(ctx, entry.id, o.dataRoot, plan, split, o.progress);
  const { ood, appearance, oodReject } = fitOutOfDistribution(train, val);
  const ask: Ask = { modelId: entry.id, calibrated: false, nearestSetStatistics: ood ?? null };
  const passes = await chooseServingPasses(ctx, entry, ask, o.dataRoot, plan, o.progress);
  const s = await sampleCases(ctx, ask, o, plan, passes);
  // The recall grid was taken on uncalibrated probabilities p = sigmoid(z); with temperature T
  // the calibrated probability is sigmoid(z / T), so a calibrated threshold t maps to sigmoid(T * logit(t)).
  const T = fitTemperature(s.pixelZ, s.pixelY);
  const masks = chooseMaskChoices(s.present, T);
  const scores = fitScores(s);
  const { presence, quality } = scores[''];
  const specialistScores = Object.fromEntries(Object.entries(scores).filter(([net]) => net));
  return {
    fitted_on: { split, cases: s.cases, datasets: plan.map((p) => p.id), ...(skipped.length ? { skipped_datasets: skipped } : {}), date: new Date().toISOString().slice(0, 10), model_files_sha256: modelFilesFingerprint(entry.files) },
    pixel_temperature: T,
    presence,
    quality,
    ...(Object.keys(specialistScores).length ? { specialist_scores: specialistScores } : {}),
    ...(ood ? { ood } : {}),
    ...(appearance ? { appearance } : {}),
    ...(passes.withSpecialist ? { specialists: passes.specialist, ...(Object.keys(passes.specialistNames).length ? { specialist_names: passes.specialistNames } : {}), specialist_gain: passes.specialistGain } : {}),
    zoom: passes.zoom,
    zoom_gain: passes.zoomGain,
    tta_image: passes.ttaImage,
    tta_image_gain: passes.ttaImageGain,
    mask_threshold: masks.maskThreshold,
    mask_threshold_gain: masks.maskThresholdGain,
    largest_component: masks.largestComponent,
    largest_component_gain: masks.largestComponentGain,
    thresholds: {
      presence: Math.round(presenceThreshold(s, scores) * 1e4) / 1e4,
      ...verdictThresholds(s.present, scores),
      ood_reject: Math.round(oodReject * 1e4) / 1e4,
    },
    conformal: conformalThresholds(s.present, T),
  };
}

/**
 * Per dataset of the data root's index, its split's cases (at most `limit`, spread over the split);
 * a dataset with a structure the vocabulary does not know is skipped (the model was not trained on
 * it: its structures would count as missed, its images as in distribution), and named.
 */
function casePlan(vocab: Vocabulary, dataRoot: string, split: string, limit: number): { plan: CasePlan; skipped: { dataset: string; unknown: string[] }[] } {
  const plan: CasePlan = [], skipped: { dataset: string; unknown: string[] }[] = [];
  for (const id of readDatasetIds(dataRoot)) {
    const unknown = readDatasetMeta(dataRoot, id).structures.map((s) => s.slug).filter((slug) => !vocab.bySlug.has(slug));
    if (unknown.length) skipped.push({ dataset: id, unknown });
    else plan.push({ id, cases: spread(readSplits(dataRoot, id)[split] ?? [], limit) });
  }
  return { plan, skipped };
}

/** In this order, each with the choices before it: the specialists, the second look, the image copies. */
async function chooseServingPasses(ctx: ServiceContext, entry: ModelEntry, ask: Ask, dataRoot: string, plan: CasePlan, progress?: CalibrateOptions['progress']): Promise<ServingPasses> {
  const vocab = ctx.pipeline.vocabulary;
  // only a redrawing specialist is chosen for (one that answers altogether draws the first look: nothing to choose)
  const withSpecialist = redrawingSpecialists(entry).some((sp) => sp.structures.length > 0);
  const { chosen: specialist, names: specialistNames, gain: specialistGain } = withSpecialist
    ? await chooseSpecialists(ctx, entry, ask, dataRoot, plan, progress)
    : { chosen: [], names: {}, gain: {} };
  const { chosen: zoom, gain: zoomGain } = await chooseSwitch(ctx, ask, dataRoot, plan, { label: 'second look', applies: (slug) => vocab.bySlug.get(slug)?.scale !== 'tiled', off: { specialist, specialistNames, zoom: false }, on: { specialist, specialistNames, zoom: true } }, progress);
  const { chosen: ttaImage, gain: ttaImageGain } = await chooseImageTta(ctx, ask, dataRoot, plan, { zoom, specialist, specialistNames }, progress);
  return { withSpecialist, specialist, specialistNames, specialistGain, zoom, zoomGain, ttaImage, ttaImageGain };
}

/**
 * One pass over the cases with the chosen serving passes, uncalibrated: each case is asked its own
 * structures, two structures of other regions and one nonsense prompt; present structures give
 * pixel samples, Dice at every mask threshold and recall at every conformal threshold.
 */
async function sampleCases(ctx: ServiceContext, ask: Ask, o: CalibrateOptions, plan: CasePlan, passes: ServingPasses): Promise<ValSamples> {
  const vocab = ctx.pipeline.vocabulary;
  const pixels = o.pixelsPerCase ?? 1500;
  const rnd = seededRandom(11);
  const s: ValSamples = { cases: 0, pixelZ: [], pixelY: [], presenceZ: [], presenceY: [], presenceNet: [], presenceNear: [], present: [] };
  // the network that answered a prompt: a specialist that answers for it altogether, else the model's own ('')
  const netOf = (r: { answeredBy?: string }) => r.answeredBy ?? '';
  const total = plan.reduce((n, p) => n + p.cases.length, 0);
  const { zoom, specialist, specialistNames, ttaImage } = passes;
  let done = 0;
  for (const { id, cases: list } of plan) {
    const meta = readDatasetMeta(o.dataRoot, id);
    const others = vocab.absentFor({ id, modality: meta.modality, structures: meta.structures.map((st) => st.slug) });
    for (const [ci, c] of list.entries()) {
      const image = await decodeImage(await readFile(caseImagePath(o.dataRoot, id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const prompts = meta.structures.map((st) => vocab.bySlug.get(st.slug)?.name ?? st.slug);
      const neg = [others[Math.floor(rnd() * others.length)].name, others[Math.floor(rnd() * others.length)].name, vocab.data.nonsense.train[ci % vocab.data.nonsense.train.length]];
      const res = await segment(ctx.pipeline, { ...ask, image, prompts: [...prompts, ...neg], zoom, specialist, specialistNames, ttaImage });
      s.cases++;
      const near = (prompt: string) => {
        const st = vocab.match(prompt);
        return st && ask.nearestSetStatistics ? lnDistanceToSets(res.image.embedding, ask.nearestSetStatistics, st.datasets) : 0;
      };
      const { width: w, height: h } = res;
      for (const [k, st] of meta.structures.entries()) {
        const gt = await readCaseMask(o.dataRoot, id, st.slug, c, { width: w, height: h });
        const gsum = gt.reduce((a, v) => a + v, 0);
        const r = res.results[k];
        const prob = probabilityMap(r);
        s.presenceZ.push(logit(r.presenceRaw));
        s.presenceY.push(gsum > 0 ? 1 : 0);
        s.presenceNet.push(netOf(r));
        s.presenceNear.push(near(prompts[k]));
        if (gsum === 0) continue;
        for (let j = 0; j < pixels; j++) {
          const i = Math.floor(rnd() * w * h);
          s.pixelZ.push(logit(prob[i]));
          s.pixelY.push(gt[i]);
        }
        s.present.push({ slug: st.slug, net: netOf(r), qualityLogit: logit(r.predictedQuality), dice: dice(r.mask, gt), diceAt: diceByThreshold(prob, gt, gsum), diceLargest: largestComponentDice(r.mask, gt, w, h), uncertain: r.uncertainty.uncertainFraction, recallAt: recallByThreshold(prob, gt, gsum) });
      }
      for (let k = prompts.length; k < res.results.length; k++) {
        s.presenceZ.push(logit(res.results[k].presenceRaw));
        s.presenceY.push(0);
        s.presenceNet.push(netOf(res.results[k]));
        s.presenceNear.push(near(neg[k - prompts.length]));
      }
      o.progress?.(++done, total, id);
    }
  }
  return s;
}

/** Recall of the mask `probability >= t` for every t of GRID. */
function recallByThreshold(prob: ArrayLike<number>, gt: ArrayLike<number>, gtSum: number): number[] {
  const recallAt = GRID.map(() => 0);
  for (let i = 0; i < gt.length; i++) {
    if (!gt[i]) continue;
    const p = prob[i];
    for (let g = 0; g < GRID.length && GRID[g] <= p; g++) recallAt[g]++;
  }
  return recallAt.map((v) => v / gtSum);
}

/**
 * Per structure, the mask threshold with the highest mean val Dice, kept where it beats 0.5 by at
 * least half a point (thin structures such as membranes score better with a lower one); then, among
 * the structures that keep 0.5, those whose Dice rises by at least half a point when only the mask's
 * largest connected component is kept (polyps, ventricles: one blob each). Each row's Dice becomes
 * that of the mask that will be served, so that the quality and verdict fits see it.
 */
function chooseMaskChoices(present: PresentRow[], T: number) {
  const { chosen: maskThreshold, gridIndex, gain: maskThresholdGain } = chooseMaskThresholds(present, T);
  for (const p of present) if (gridIndex[p.slug] !== undefined) p.dice = p.diceAt[gridIndex[p.slug]];
  const { chosen: largestComponent, gain: largestComponentGain } = chooseLargestComponent(present.filter((p) => gridIndex[p.slug] === undefined));
  for (const p of present) if (largestComponent.includes(p.slug)) p.dice = p.diceLargest;
  return { maskThreshold, maskThresholdGain, largestComponent, largestComponentGain };
}

type Platt = { a: number; b: number };
type NetScores = Record<string, { presence: PresenceScaling; quality: Platt }>;

/** Fewest present and absent val prompts a specialist must have answered to get its own score scaling. */
const MIN_SCORE_SAMPLES = 20;

/**
 * Presence and quality Platt scaling per network that answered the val prompts: the model's own
 * ('', fitted on every prompt where no specialist has its own) and each specialist that answers
 * for its structures altogether, whose scores are on another scale, when it answered at least
 * MIN_SCORE_SAMPLES present and absent prompts. Such a specialist's presence also weighs how near
 * the image lies to the sets that label the structure (`near`): fine-tuned on few negatives per
 * structure, its own presence finds an optic disc on a CT or a foot ulcer in a colonoscopy.
 */
export function fitScores(s: ValSamples): NetScores {
  const count = (net: string, y: number) => s.presenceNet.filter((n, i) => n === net && s.presenceY[i] === y).length;
  const own = [...new Set(s.presenceNet)].filter((net) => net && count(net, 1) >= MIN_SCORE_SAMPLES && count(net, 0) >= MIN_SCORE_SAMPLES);
  s.presenceNet = s.presenceNet.map((n) => (own.includes(n) ? n : ''));
  for (const p of s.present) if (!own.includes(p.net)) p.net = '';
  return Object.fromEntries(
    ['', ...own].map((net) => {
      const on = s.presenceNet.flatMap((n, i) => (n === net ? [i] : []));
      const rows = s.present.filter((p) => p.net === net);
      const y = on.map((i) => s.presenceY[i]);
      const presence: PresenceScaling = net ? nearScaling(fitLogistic(on.map((i) => [s.presenceZ[i], s.presenceNear[i]]), y)) : fitPlatt(on.map((i) => s.presenceZ[i]), y);
      return [net, { presence, quality: fitPlatt(rows.map((p) => p.qualityLogit), rows.map((p) => p.dice)) }];
    }),
  );
}

/** A logistic fit on (presence logit, ln distance to the structure's sets) as a presence scaling. */
const nearScaling = (f: { w: number[]; b: number }): PresenceScaling => ({ a: f.w[0], b: f.b, near: f.w[1] });

/**
 * The lowest presence threshold that still keeps at least 99% of val negatives (other regions'
 * structures, nonsense, structures a case lacks) below it, never above 0.5: every present structure
 * that clears it gets a mask and an accept/review verdict instead of a rejection.
 */
function presenceThreshold(s: ValSamples, scores: NetScores): number {
  const negP = s.presenceZ.flatMap((z, i) => (s.presenceY[i] === 0 ? [presenceProbability(z, scores[s.presenceNet[i]].presence, s.presenceNear[i])] : [])).sort((a, b) => a - b);
  return Math.min(0.5, Math.max(0.02, (negP[Math.min(negP.length - 1, Math.ceil(0.99 * negP.length))] ?? 0.5) + 1e-4));
}

/**
 * Out-of-distribution statistics: per training dataset, from train-split images (the model's own
 * training distribution) for the pooled embedding and the model-free appearance descriptor; each
 * threshold comes from val images, which the statistics never saw. Val images are in distribution
 * by construction: an OOD score up to their 99.5th percentile asks for review, beyond it rejects.
 */
function fitOutOfDistribution(train: SplitFeatures, val: SplitFeatures): { ood?: OodStats; appearance?: OodStats; oodReject: number } {
  const ood = train.dim && train.enough ? fitKnnStats(train.embeddings, [...val.embeddings.values()].flat()) : undefined;
  const appearance = train.enough ? fitKnnStats(train.appearances, [...val.appearances.values()].flat()) : undefined;
  const valRatios = [...val.embeddings.keys()].flatMap((id) => val.embeddings.get(id)!.map((e, i) => assessImage({ ood, appearance } as Calibration, e, val.appearances.get(id)![i]).oodScore ?? 0));
  return { ood, appearance, oodReject: Math.max(1, percentile(valRatios, 99.5)) };
}

/** The calibrated-quality and uncertain-fraction cut-offs that best separate failures (Dice < 0.7) on val (Youden's J over GRID). */
function verdictThresholds(present: PresentRow[], scores: NetScores): { quality: number; uncertain_fraction: number } {
  const fail: number[] = present.map((p) => (p.dice < 0.7 ? 1 : 0));
  const P = fail.reduce((n, v) => n + v, 0), N = fail.length - P;
  const youden = (score: number[], higherIsFailure: boolean) => {
    let best = GRID[0], bestJ = -Infinity;
    for (const c of GRID) {
      let tp = 0, fp = 0;
      score.forEach((v, i) => {
        const flagged = higherIsFailure ? v > c : v < c;
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
  return {
    quality: youden(present.map((p) => platt(p.qualityLogit, scores[p.net].quality)), false),
    uncertain_fraction: youden(present.map((p) => p.uncertain), true),
  };
}

/**
 * Conformal risk control per structure and level: the largest GRID threshold whose adjusted mean
 * miss rate (1 - recall) over the structure's present val cases stays within 1 - level, stored as
 * the equivalent calibrated probability. Conformal masks are drawn whatever the presence decision.
 */
function conformalThresholds(present: PresentRow[], T: number): Record<string, Record<string, number>> {
  const conformal: Record<string, Record<string, number>> = {};
  for (const slug of [...new Set(present.map((p) => p.slug))]) {
    const rows = present.filter((p) => p.slug === slug);
    const m = rows.length;
    conformal[slug] = {};
    for (const level of LEVELS) {
      const alpha = 1 - Number(level);
      let chosen = GRID[0];
      for (let g = GRID.length - 1; g >= 0; g--) {
        const risk = rows.reduce((sum, r) => sum + (1 - r.recallAt[g]), 0) / m;
        if ((m / (m + 1)) * risk + 1 / (m + 1) <= alpha) {
          chosen = GRID[g];
          break;
        }
      }
      conformal[slug][level] = Math.round(sigmoid(logit(chosen) / T) * 1e4) / 1e4;
    }
  }
  return conformal;
}

export function writeCalibration(ctx: ServiceContext, modelId: string | undefined, cal: Calibration): string {
  const entry = ctx.pipeline.registry.entry(modelId ?? ctx.pipeline.registry.defaultId);
  const file = path.join(ctx.pipeline.registry.dirOf(entry), entry.calibration ?? 'calibration.json');
  const round = (_: string, v: unknown) => (typeof v === 'number' ? Math.round(v * 1e6) / 1e6 : v);
  writeFileSync(file, JSON.stringify(cal, round, 1));
  return file;
}

/** Rows grouped by structure slug, in slug order. */
function bySlug<T extends { slug: string }>(rows: T[]): [string, T[]][] {
  const m = new Map<string, T[]>();
  for (const r of rows) m.set(r.slug, [...(m.get(r.slug) ?? []), r]);
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Dice of the mask `probability >= t` for every t of MASK_GRID, in one pass over the pixels. */
export function diceByThreshold(probability: ArrayLike<number>, gt: ArrayLike<number>, gtSum: number): number[] {
  const G = MASK_GRID.length;
  const hist = new Float64Array(G), hit = new Float64Array(G);
  for (let i = 0; i < probability.length; i++) {
    const p = probability[i];
    if (!(p >= MASK_GRID[0])) continue;
    const b = Math.min(G - 1, Math.floor((p - MASK_GRID[0]) / MASK_STEP + 1e-9));
    hist[b]++;
    if (gt[i]) hit[b]++;
  }
  const out = new Array<number>(G);
  let pos = 0, tp = 0;
  for (let g = G - 1; g >= 0; g--) {
    pos += hist[g];
    tp += hit[g];
    out[g] = pos + gtSum > 0 ? (2 * tp) / (pos + gtSum) : 1;
  }
  return out;
}

/** Dice of the mask reduced to its largest connected component (the mask itself is left as it is). */
export function largestComponentDice(mask: Uint8Array, gt: Uint8Array, width: number, height: number): number {
  const kept = Uint8Array.from(mask);
  keepLargestComponent(kept, width, height);
  return dice(kept, gt);
}

/** Structures whose mean val Dice rises by at least half a point with the largest component alone. */
export function chooseLargestComponent(present: { slug: string; dice: number; diceLargest: number }[]): { chosen: string[]; gain: Record<string, { mean: number; n: number }> } {
  const gain: Record<string, { mean: number; n: number }> = {};
  const chosen: string[] = [];
  for (const [slug, rows] of bySlug(present)) {
    const d = rows.reduce((s, r) => s + r.diceLargest - r.dice, 0) / rows.length;
    gain[slug] = { mean: Math.round(d * 1e4) / 1e4, n: rows.length };
    if (d >= MIN_GAIN) chosen.push(slug);
  }
  return { chosen, gain };
}

/**
 * Per structure, the grid threshold with the highest mean val Dice over its present cases; chosen
 * (as a calibrated probability, sigmoid(logit(t) / T)) where it beats 0.5 by at least half a point.
 */
export function chooseMaskThresholds(present: { slug: string; diceAt: number[] }[], T: number): { chosen: Record<string, number>; gridIndex: Record<string, number>; gain: Record<string, { threshold: number; mean: number; n: number }> } {
  const chosen: Record<string, number> = {}, gridIndex: Record<string, number> = {};
  const gain: Record<string, { threshold: number; mean: number; n: number }> = {};
  for (const [slug, rows] of bySlug(present)) {
    const meanAt = MASK_GRID.map((_, g) => rows.reduce((s, r) => s + r.diceAt[g], 0) / rows.length);
    let best = MASK_BASE;
    meanAt.forEach((m, g) => {
      if (m > meanAt[best]) best = g;
    });
    const th = Math.round(sigmoid(logit(MASK_GRID[best]) / T) * 1e4) / 1e4;
    const d = meanAt[best] - meanAt[MASK_BASE];
    gain[slug] = { threshold: th, mean: Math.round(d * 1e4) / 1e4, n: rows.length };
    if (d >= MIN_GAIN) {
      chosen[slug] = th;
      gridIndex[slug] = best;
    }
  }
  return { chosen, gridIndex, gain };
}

/** A serving switch the calibration turns on per structure: which structures it can apply to, and the request without and with it. */
interface ServingSwitch {
  label: string;
  applies: (slug: string) => boolean;
  off: Partial<SegmentRequest>;
  on: Partial<SegmentRequest>;
}

/** One val case as a serving-pass chooser sees it: its image, the structures asked and their names as prompts. */
interface ChooserCase {
  image: Awaited<ReturnType<typeof decodeImage>>;
  slugs: string[];
  prompts: string[];
  /** The k-th structure's ground truth at the answer's size; undefined where the structure is absent. */
  truth(k: number, size: { width: number; height: number }): Promise<Uint8Array | undefined>;
}

/**
 * The loop the serving-pass choosers share: every planned case of each dataset, with the structures
 * `pick` selects from it (a dataset with none is skipped), decoded once and handed to `visit`.
 */
async function forEachChooserCase(ctx: ServiceContext, dataRoot: string, plan: CasePlan, label: string, pick: (slugs: string[]) => string[], visit: (c: ChooserCase) => Promise<void>, progress?: CalibrateOptions['progress']): Promise<void> {
  const vocab = ctx.pipeline.vocabulary;
  const total = plan.reduce((s, p) => s + p.cases.length, 0);
  let done = 0;
  for (const { id, cases } of plan) {
    const meta = readDatasetMeta(dataRoot, id);
    const slugs = pick(meta.structures.map((s) => s.slug));
    if (!slugs.length) {
      done += cases.length;
      continue;
    }
    const prompts = slugs.map((slug) => vocab.bySlug.get(slug)?.name ?? slug);
    for (const c of cases) {
      const image = await decodeImage(await readFile(caseImagePath(dataRoot, id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const truth = async (k: number, size: { width: number; height: number }) => {
        const gt = await readCaseMask(dataRoot, id, slugs[k], c, size);
        return gt.some((v) => v === 1) ? gt : undefined;
      };
      await visit({ image, slugs, prompts, truth });
      progress?.(++done, total, `${id} (${label})`);
    }
  }
}

/**
 * Structures whose mean val Dice rises by at least half a point with a serving switch (the second,
 * closer look), among those it applies to; each case is run with and without it.
 */
async function chooseSwitch(ctx: ServiceContext, ask: Ask, dataRoot: string, plan: CasePlan, sw: ServingSwitch, progress?: CalibrateOptions['progress']): Promise<{ chosen: string[]; gain: Record<string, { mean: number; n: number }> }> {
  const gain = new Map<string, number[]>();
  await forEachChooserCase(ctx, dataRoot, plan, sw.label, (slugs) => slugs.filter(sw.applies), async ({ image, slugs, prompts, truth }) => {
    const without = await segment(ctx.pipeline, { ...ask, ...sw.off, image, prompts });
    const withIt = await segment(ctx.pipeline, { ...ask, ...sw.on, image, prompts });
    for (const [k, slug] of slugs.entries()) {
      const gt = await truth(k, without);
      if (gt) gain.set(slug, [...(gain.get(slug) ?? []), dice(withIt.results[k].mask, gt) - dice(without.results[k].mask, gt)]);
    }
  }, progress);
  const mean = (g: number[]) => g.reduce((a, b) => a + b, 0) / g.length;
  return {
    chosen: [...gain.entries()].filter(([, g]) => mean(g) >= MIN_GAIN).map(([slug]) => slug).sort(),
    gain: Object.fromEntries([...gain.entries()].sort().map(([slug, g]) => [slug, { mean: Math.round(mean(g) * 1e4) / 1e4, n: g.length }])),
  };
}

/** What a structure's specialist choice was made from: the chosen (or best) specialist's mean val Dice change and the cases; with several candidates, each one's mean change. */
export interface SpecialistGain {
  mean: number;
  n: number;
  by_specialist?: Record<string, number>;
}

/**
 * Per structure, from each candidate specialist's val Dice changes (in manifest order): the one
 * with the highest mean change (ties: the earlier), chosen when that mean reaches MIN_GAIN; its name
 * is recorded only where there was a choice among several.
 */
export function pickSpecialists(changes: Map<string, Map<string, number[]>>): { chosen: string[]; names: Record<string, string>; gain: Record<string, SpecialistGain> } {
  const mean = (g: number[]) => g.reduce((a, b) => a + b, 0) / g.length;
  const round = (v: number) => Math.round(v * 1e4) / 1e4;
  const chosen: string[] = [], names: Record<string, string> = {}, gain: Record<string, SpecialistGain> = {};
  for (const slug of [...changes.keys()].sort()) {
    const byName = [...changes.get(slug)!.entries()].map(([name, g]) => ({ name, mean: mean(g), n: g.length }));
    const best = byName.reduce((a, b) => (b.mean > a.mean ? b : a));
    if (best.mean >= MIN_GAIN) {
      chosen.push(slug);
      if (byName.length > 1) names[slug] = best.name;
    }
    gain[slug] = { mean: round(best.mean), n: best.n, ...(byName.length > 1 ? { by_specialist: Object.fromEntries(byName.map((c) => [c.name, round(c.mean)])) } : {}) };
  }
  return { chosen, names, gain };
}

/**
 * Which redrawing specialist serves each structure that one or more may redraw: every case is run
 * without one, then once per candidate rank (the first candidate of each of its structures, then the
 * second of those that have two, ...), and pickSpecialists decides from the Dice changes.
 */
async function chooseSpecialists(ctx: ServiceContext, entry: ModelEntry, ask: Ask, dataRoot: string, plan: CasePlan, progress?: CalibrateOptions['progress']) {
  const changes = new Map<string, Map<string, number[]>>();
  const candidates = (slug: string) => redrawingCandidates(entry, slug).map((sp) => sp.name);
  await forEachChooserCase(ctx, dataRoot, plan, 'specialist', (slugs) => slugs.filter((slug) => candidates(slug).length), async ({ image, slugs, prompts, truth }) => {
    const without = await segment(ctx.pipeline, { ...ask, specialist: false, zoom: false, image, prompts });
    const truths = await Promise.all(slugs.map((_, k) => truth(k, without)));
    const ranks = Math.max(...slugs.map((slug) => candidates(slug).length));
    for (let rank = 0; rank < ranks; rank++) {
      const names = Object.fromEntries(slugs.filter((slug) => candidates(slug).length > rank).map((slug) => [slug, candidates(slug)[rank]]));
      const withIt = await segment(ctx.pipeline, { ...ask, specialist: Object.keys(names), specialistNames: names, zoom: false, image, prompts });
      for (const [k, slug] of slugs.entries()) {
        const gt = truths[k];
        if (!(slug in names) || !gt) continue;
        const bySpecialist = changes.get(slug) ?? new Map<string, number[]>();
        changes.set(slug, bySpecialist.set(names[slug], [...(bySpecialist.get(names[slug]) ?? []), dice(withIt.results[k].mask, gt) - dice(without.results[k].mask, gt)]));
      }
    }
  }, progress);
  return pickSpecialists(changes);
}

/** Image transform counts tried per structure by the calibration (the first n of IMAGE_TRANSFORMS that suit the structure). */
const TTA_COUNTS = [2, 4, 6];

/**
 * Per structure, the image-side test-time augmentation count that raises mean val Dice by at least
 * half a point over none: the cheapest count within a quarter point of the best. Each case runs with
 * the largest count first, so the smaller counts reuse its transformed copies' cached features.
 */
async function chooseImageTta(ctx: ServiceContext, ask: Ask, dataRoot: string, plan: CasePlan, chosen: Pick<SegmentRequest, 'zoom' | 'specialist' | 'specialistNames'>, progress?: CalibrateOptions['progress']): Promise<{ chosen: Record<string, number>; gain: Record<string, { n: number; gain: Record<string, number> }> }> {
  const rows: { slug: string; diceAt: number[] }[] = []; // per present case: Dice with [0, ...TTA_COUNTS] copies
  const largestFirst = [...TTA_COUNTS].sort((a, b) => b - a);
  await forEachChooserCase(ctx, dataRoot, plan, 'image augmentation', (slugs) => slugs, async ({ image, slugs, prompts, truth }) => {
    const byCount = new Map<number, Awaited<ReturnType<typeof segment>>>();
    for (const n of [...largestFirst, 0]) byCount.set(n, await segment(ctx.pipeline, { ...ask, ...chosen, image, prompts, ttaImage: n }));
    const plain = byCount.get(0)!;
    for (const [k, slug] of slugs.entries()) {
      const gt = await truth(k, plain);
      if (gt) rows.push({ slug, diceAt: [0, ...TTA_COUNTS].map((n) => dice(byCount.get(n)!.results[k].mask, gt)) });
    }
  }, progress);
  return chooseTtaCounts(rows);
}

/**
 * Per structure, from each present case's Dice with [0, ...TTA_COUNTS] image copies: where the best
 * count raises mean Dice by at least MIN_GAIN (half a point), the cheapest count within a quarter point of it.
 */
export function chooseTtaCounts(rows: { slug: string; diceAt: number[] }[]): { chosen: Record<string, number>; gain: Record<string, { n: number; gain: Record<string, number> }> } {
  const chosen: Record<string, number> = {};
  const gain: Record<string, { n: number; gain: Record<string, number> }> = {};
  for (const [slug, list] of bySlug(rows)) {
    const g = TTA_COUNTS.map((_, j) => list.reduce((s, r) => s + r.diceAt[j + 1] - r.diceAt[0], 0) / list.length);
    gain[slug] = { n: list.length, gain: Object.fromEntries(TTA_COUNTS.map((n, j) => [String(n), Math.round(g[j] * 1e4) / 1e4])) };
    const best = Math.max(...g);
    if (best >= MIN_GAIN) chosen[slug] = TTA_COUNTS[g.findIndex((v) => v >= best - MIN_GAIN / 2)];
  }
  return { chosen, gain };
}

/** Per dataset, pooled image embeddings and appearance descriptors; dim: the embedding's length; enough: some dataset has more than 3 images. */
interface SplitFeatures {
  embeddings: Map<string, Float32Array[]>;
  appearances: Map<string, Float32Array[]>;
  dim: number;
  enough: boolean;
}

/** Pooled image embeddings and appearance descriptors of the planned cases, per dataset (whole-image pass, no prompts decoded). */
async function embedCases(ctx: ServiceContext, modelId: string, dataRoot: string, plan: CasePlan, label: string, progress?: CalibrateOptions['progress']): Promise<SplitFeatures> {
  const embeddings = new Map<string, Float32Array[]>(), appearances = new Map<string, Float32Array[]>();
  let done = 0;
  const total = plan.reduce((n, p) => n + p.cases.length, 0);
  for (const { id, cases } of plan) {
    const meta = readDatasetMeta(dataRoot, id);
    const e: Float32Array[] = [], a: Float32Array[] = [];
    for (const c of cases) {
      const image = await decodeImage(await readFile(caseImagePath(dataRoot, id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const r = await segment(ctx.pipeline, { image, prompts: [], modelId, calibrated: false });
      e.push(r.image.embedding);
      a.push(r.image.appearance);
      progress?.(++done, total, `${id} (${label} embeddings)`);
    }
    embeddings.set(id, e);
    appearances.set(id, a);
  }
  const dim = embeddings.values().next().value?.[0]?.length ?? 0;
  return { embeddings, appearances, dim, enough: [...appearances.values()].some((l) => l.length > 3) };
}

/**
 * k-NN out-of-distribution statistics: features standardised over all training images; per
 * dataset, the training bank and a radius (the 95th percentile of its images' leave-one-out
 * distance to their k-th neighbour); the threshold is the 99th percentile (at least 1) of held-out
 * val images' scores, plus 10%.
 */
export function fitKnnStats(train: Map<string, Float32Array[]>, heldOut: Float32Array[], k = 3): OodStats {
  const all = [...train.values()].flat();
  const dim = all[0]?.length ?? 0;
  if (!dim || all.some((e) => e.length !== dim) || heldOut.some((e) => e.length !== dim)) throw new Error(`k-NN statistics need features of one non-zero length (got ${[...new Set([...all, ...heldOut].map((e) => e.length))].join(', ')})`);
  const mean = Array.from({ length: dim }, (_, i) => all.reduce((s, e) => s + e[i], 0) / all.length);
  const std = Array.from({ length: dim }, (_, i) => Math.sqrt(all.reduce((s, e) => s + (e[i] - mean[i]) ** 2, 0) / all.length + 1e-6));
  const bank: Record<string, string> = {};
  const radius: Record<string, number> = {};
  for (const [id, list] of train) {
    if (list.length <= k) continue;
    const z = list.map((e) => standardise(e, mean, std));
    radius[id] = Math.max(1e-6, percentile(z.map((q, i) => kthNearest(q, z, k, i)), 95));
    const flat = new Float32Array(z.length * dim);
    z.forEach((q, i) => flat.set(q, i * dim));
    bank[id] = Buffer.from(flat.buffer).toString('base64');
  }
  const stats = { mean, std, k, bank, radius, threshold: 1 };
  const scores = heldOut.map((e) => oodScore(e, stats).score);
  return { ...stats, threshold: Math.max(1, percentile(scores, 99)) * 1.1 };
}
