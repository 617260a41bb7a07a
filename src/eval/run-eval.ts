import { createHash, type Hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ServiceContext } from '../service/context.js';
import { segmentOperation } from '../service/operations/segment.js';
import { runOperation } from '../service/run-operation.js';
import type { Operation } from '../service/operation.js';
import type { SegmentOutput } from '../service/schemas.js';
import { nonMedicalImages } from './ood-probe.js';
import { calibrationFor, probabilityMap } from '../core/pipeline/segment.js';
import { logit } from '../core/trust/calibration.js';
import { sigmoid } from '../core/trust/scores.js';
import { auroc, bootstrapCi, calibration, dice, iou, mean, percentile, seededRandom, surfaceMetrics } from './metrics.js';
import type { Suite } from './suite.js';
import type { Vocabulary } from '../core/vocabulary.js';
import { caseImagePath, readCaseMask, readDatasetIds, readDatasetMeta, readSplits, spread, type DatasetMeta } from './dataset-layout.js';

export type PromptSet = 'canonical' | 'eval_only' | 'absent' | 'nonsense';

export interface CaseRecord {
  model: string;
  dataset: string;
  modality: string;
  case: string;
  structure: string | null;
  set: PromptSet;
  prompt: string;
  gt_present: boolean;
  presence: number;
  mask_empty: boolean;
  dice: number | null;
  iou: number | null;
  hd95: number | null;
  nsd: number | null;
  predicted_quality: number;
  /** The pixel threshold the served mask used (the suite's, or the structure's fitted one). */
  mask_threshold: number;
  verdict: string;
  latency_ms: number;
  /** Recall of the conformal mask at each fitted level (canonical prompts on present structures). */
  conformal_recall?: Record<string, number>;
  ood_flagged: boolean;
  ood_score: number | null;
  /** Units of hd95 and nsd's tolerance: mm when the image carried its spacing. */
  surface_units: 'px' | 'mm';
}

export interface EvalProgress {
  (done: number, total: number, label: string): void;
}


export interface PixelSamples {
  /** Calibrated pixel probabilities (what the service returns) and labels. */
  p: number[];
  y: number[];
  /** The same pixels before temperature scaling, when the model has a calibration. */
  raw: number[];
}

export type ProbeResults = Record<string, { images: number; flagged: number; by_kind: Record<string, { images: number; flagged: number }> }>;

/** The segment operation as the service runs it (the eval goes through the service API, never HTTP). */
const SEGMENT = segmentOperation as unknown as Operation;

/** One prompt asked of a case: its words, the structure it names (null for nonsense) and its prompt set. */
interface CasePrompt {
  prompt: string;
  structure: string | null;
  set: PromptSet;
}

type EvalPlan = { ds: DatasetMeta; cases: string[] }[];

/** Per dataset of the suite, the split's cases (at most `limit`, spread over the split); a missing dataset or split is an error naming it. */
function planCases(dataRoot: string, ids: string[], split: string, limit: number): EvalPlan {
  return ids.map((id) => {
    if (!existsSync(path.join(dataRoot, id, 'dataset.json'))) throw new Error(`dataset ${id} not found under ${dataRoot}`);
    const splits = readSplits(dataRoot, id);
    if (!Array.isArray(splits[split])) throw new Error(`dataset ${id} has no split "${split}"`);
    return { ds: readDatasetMeta(dataRoot, id), cases: spread(splits[split], limit) };
  });
}

/**
 * The prompts of the ci-th case: per structure its canonical name and one eval-only phrasing (in
 * turn over the cases), then structures of other regions (drawn with `rnd`) and nonsense.
 */
function casePrompts(vocab: Vocabulary, suite: Suite, ds: DatasetMeta, ci: number, otherRegion: { name: string; slug: string }[], rnd: () => number): CasePrompt[] {
  const prompts: CasePrompt[] = [];
  for (const s of ds.structures) {
    const v = vocab.bySlug.get(s.slug);
    const name = v?.name ?? s.name;
    if (suite.prompt_sets.includes('canonical')) prompts.push({ prompt: name, structure: s.slug, set: 'canonical' });
    if (suite.prompt_sets.includes('eval_only') && v) {
      const modalityWord = vocab.data.datasets.find((d) => d.id === ds.id)?.modality_words[0] ?? 'image';
      const options = [...vocab.data.templates.eval.map((t) => t.replace('{s}', name).replace('{m}', modalityWord)), ...v.eval_synonyms];
      prompts.push({ prompt: options[ci % options.length], structure: s.slug, set: 'eval_only' });
    }
  }
  for (let k = 0; k < suite.negatives.absent_per_case && otherRegion.length; k++) {
    const s = otherRegion[Math.floor(rnd() * otherRegion.length)];
    prompts.push({ prompt: s.name, structure: s.slug, set: 'absent' });
  }
  for (let k = 0; k < suite.negatives.nonsense_per_case; k++) {
    const n = vocab.data.nonsense.eval;
    prompts.push({ prompt: n[(ci + k) % n.length], structure: null, set: 'nonsense' });
  }
  return prompts;
}

/** Recall of the conformal mask (every pixel at or above the level's threshold) at each fitted level. */
function conformalRecall(levels: Record<string, number>, prob: Float32Array, gt: Uint8Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [level, th] of Object.entries(levels)) {
    let hit = 0, total = 0;
    for (let j = 0; j < gt.length; j++) {
      if (!gt[j]) continue;
      total++;
      if (prob[j] >= th) hit++;
    }
    out[level] = hit / total;
  }
  return out;
}

/** Dice, IoU and the surface metrics of a present structure's mask: in mm when the image carried its spacing, else in pixels. */
function overlapScores(mask: Uint8Array, gt: Uint8Array, w: number, h: number, suite: Suite, spacing: Parameters<typeof surfaceMetrics>[5] | undefined) {
  const sm = spacing ? surfaceMetrics(mask, gt, w, h, suite.nsd_tolerance_mm, spacing) : surfaceMetrics(mask, gt, w, h, suite.nsd_tolerance_px);
  return { dice: dice(mask, gt), iou: iou(mask, gt), hd95: Number.isFinite(sm.hd95) ? sm.hd95 : null, nsd: sm.nsd, units: (spacing ? 'mm' : 'px') as 'px' | 'mm' };
}

/** Runs every model of the suite over every case of the chosen split through the service API. */
export async function runEval(ctx: ServiceContext, suite: Suite, dataRoot: string, opts: { split?: string; limit?: number; progress?: EvalProgress } = {}): Promise<{ records: CaseRecord[]; calibrationPixels: Record<string, PixelSamples>; probes: ProbeResults }> {
  ctx.keepFloatMaps = true; // the calibration figures sample the float probabilities
  const vocab = ctx.pipeline.vocabulary;
  const ids = suite.datasets === 'all' ? readDatasetIds(dataRoot) : suite.datasets;
  const plan = planCases(dataRoot, ids, opts.split ?? suite.split, opts.limit ?? suite.limit_per_dataset ?? Infinity);
  const total = plan.reduce((s, p) => s + p.cases.length, 0) * suite.models.length;
  const records: CaseRecord[] = [];
  const calib: Record<string, PixelSamples> = {};
  let done = 0;
  for (const model of suite.models) {
    const samples = (calib[model] = { p: [], y: [], raw: [] });
    const cal = calibrationFor(ctx.pipeline, ctx.pipeline.registry.entry(model));
    const rnd = seededRandom(suite.seed);
    for (const { ds, cases } of plan) {
      const otherRegion = vocab.absentFor({ id: ds.id, modality: ds.modality, structures: ds.structures.map((s) => s.slug) });
      for (const [ci, c] of cases.entries()) {
        const prompts = casePrompts(vocab, suite, ds, ci, otherRegion, rnd);
        records.push(...(await evaluateCase(ctx, { suite, dataRoot, model, ds, c, prompts, cal, rnd, samples })));
        opts.progress?.(++done, total, `${model} ${ds.id}`);
      }
    }
  }
  const probes = await probeOutOfDistribution(ctx, suite);
  return { records, calibrationPixels: calib, probes };
}

/** One case through the segment operation, and a record per prompt scored against its ground truth; canonical prompts on present structures add calibration pixels. */
async function evaluateCase(ctx: ServiceContext, a: { suite: Suite; dataRoot: string; model: string; ds: DatasetMeta; c: string; prompts: CasePrompt[]; cal: ReturnType<typeof calibrationFor>; rnd: () => number; samples: PixelSamples }): Promise<CaseRecord[]> {
  const { suite, dataRoot, model, ds, c, prompts, cal, rnd, samples } = a;
  const bytes = await readFile(caseImagePath(dataRoot, ds.id, c, ds.image_ext));
  const t0 = performance.now();
  const r = await runOperation(ctx, SEGMENT, { image: { base64: bytes.toString('base64') }, prompts: prompts.map((p) => p.prompt), model, threshold: suite.threshold, tta: suite.tta, tta_image: suite.tta_image }, { via: 'eval' });
  const latency = performance.now() - t0;
  if (!r.ok) throw new Error(`${ds.id}/${c}: ${r.error.message}`);
  const out = r.value as SegmentOutput;
  const served = ctx.results.get(out.result_id)!;
  const stored = served.result;
  const { width: w, height: h } = stored;
  const gts = new Map<string, Uint8Array>();
  for (const s of ds.structures) gts.set(s.slug, await readCaseMask(dataRoot, ds.id, s.slug, c, { width: w, height: h }));
  return prompts.map((p, i) => {
    const res = stored.results[i];
    let probMemo: Float32Array | undefined;
    const prob = () => (probMemo ??= probabilityMap(res));
    const gt = p.set === 'canonical' || p.set === 'eval_only' ? gts.get(p.structure!)! : undefined;
    const present = gt && gt.some((x) => x === 1) ? gt : undefined;
    const scores = present ? overlapScores(res.mask, present, w, h, suite, served.spacing) : undefined;
    if (present && p.set === 'canonical') {
      for (let k = 0; k < suite.calibration_pixels_per_case; k++) {
        const j = Math.floor(rnd() * w * h);
        samples.p.push(prob()[j]);
        samples.y.push(present[j]);
        if (cal) samples.raw.push(sigmoid(logit(prob()[j]) * cal.pixel_temperature));
      }
    }
    const levels = present && p.set === 'canonical' ? cal?.conformal[p.structure!] : undefined;
    return {
      conformal_recall: levels ? conformalRecall(levels, prob(), present!) : undefined,
      surface_units: scores?.units ?? 'px',
      ood_flagged: stored.image.outOfDistribution,
      ood_score: stored.image.oodScore,
      model, dataset: ds.id, modality: ds.modality, case: c, structure: p.structure, set: p.set, prompt: p.prompt,
      gt_present: !!present, presence: res.presence, mask_empty: res.stats.areaPx === 0,
      dice: scores?.dice ?? null, iou: scores?.iou ?? null, hd95: scores?.hd95 ?? null, nsd: scores?.nsd ?? null,
      predicted_quality: res.predictedQuality, mask_threshold: res.maskThreshold, verdict: res.verdict, latency_ms: Math.round(latency),
    };
  });
}

/** The out-of-distribution probe: non-medical images made by code, each asked for the heart; how many each model flags, per kind. */
async function probeOutOfDistribution(ctx: ServiceContext, suite: Suite): Promise<ProbeResults> {
  const probes: ProbeResults = {};
  const probeImages = suite.ood_probe_per_kind > 0 ? await nonMedicalImages(suite.ood_probe_per_kind, suite.seed) : [];
  for (const model of probeImages.length ? suite.models : []) {
    const p = (probes[model] = { images: 0, flagged: 0, by_kind: {} as Record<string, { images: number; flagged: number }> });
    for (const img of probeImages) {
      const r = await runOperation(ctx, SEGMENT, { image: { base64: img.png.toString('base64') }, prompts: ['heart'], model }, { via: 'eval' });
      if (!r.ok) throw new Error(`ood probe (${img.kind}): ${r.error.message}`);
      const flagged = (r.value as SegmentOutput).image_assessment.out_of_distribution;
      const k = (p.by_kind[img.kind] ??= { images: 0, flagged: 0 });
      k.images++;
      p.images++;
      if (flagged) {
        k.flagged++;
        p.flagged++;
      }
    }
  }
  return probes;
}

export interface StructureSummary {
  model: string;
  dataset: string;
  structure: string;
  n: number;
  dice: number;
  dice_ci: [number, number];
  iou: number;
  hd95_median_px: number | null;
  nsd: number;
  eval_only_dice: number | null;
  eval_only_delta: number | null;
  /** The mask threshold the canonical prompts were served with (the median, should prompts differ). */
  mask_threshold: number | null;
  /** The suite's Dice bar for this dataset/structure, and whether the canonical Dice reaches it; null without one. */
  dice_target: number | null;
  target_met: boolean | null;
}

export interface Summary {
  structures: StructureSummary[];
  presence: Record<string, { auroc: number; auroc_ci: [number, number] | null; accuracy: number; absent_empty_rate: number; nonsense_empty_rate: number; in_dataset_empty_rate: number | null; all_negatives_empty_rate: number; present_mask_rate: number; n_pos: number; n_neg: number }>;
  robustness: Record<string, { canonical_dice: number; eval_only_dice: number; delta: number; mean_spread: number }>;
  calibration: Record<string, { ece: number; ece_uncalibrated: number | null; table: ReturnType<typeof calibration>['table'] }>;
  conformal: Record<string, Record<string, { nominal: number; mean_recall: number; n: number }>>;
  ood: Record<string, { images: number; flagged: number; false_flag_rate: number; worst_dataset: { dataset: string; images: number; flagged: number } | null; probe: ProbeResults[string] | null }>;
  trust: Record<string, { failure_auroc: number; failures: number; n: number; risk_coverage: { coverage: number; risk: number }[]; verdicts: { present_accept_or_review: number; negatives_rejected: number } }>;
  paired: { a: string; b: string; structure: string; n: number; mean_difference: number; ci: [number, number] }[];
  by_dataset: { model: string; dataset: string; n: number; dice: number; dice_ci: [number, number] }[];
  by_modality: { model: string; modality: string; n: number; dice: number; dice_ci: [number, number] }[];
  latency_ms: Record<string, { p50: number; p95: number }>;
  /** The suite's Dice targets that name no structure of this run (a dataset left out, or a misspelt key). */
  targets_not_evaluated: string[];
}

/** Aggregates per structure, presence, robustness, calibration and trust, with bootstrap CIs. */
export function summarise(records: CaseRecord[], calib: Record<string, PixelSamples>, suite: Suite, probes: ProbeResults = {}): Summary {
  const models = [...new Set(records.map((r) => r.model))];
  const s: Omit<Summary, 'targets_not_evaluated' | 'paired' | 'by_dataset' | 'by_modality'> = { structures: [], presence: {}, robustness: {}, calibration: {}, conformal: {}, ood: {}, trust: {}, latency_ms: {} };
  for (const m of models) {
    const rs = records.filter((r) => r.model === m);
    const { rows, robustness } = structureFigures(m, rs, suite);
    s.structures.push(...rows);
    s.robustness[m] = robustness;
    s.presence[m] = presenceFigures(rs);
    const c = calib[m];
    if (c && c.p.length) s.calibration[m] = { ...calibration(c.p, c.y, 10), ece_uncalibrated: c.raw.length ? calibration(c.raw, c.y, 10).ece : null };
    s.conformal[m] = conformalFigures(rs);
    s.ood[m] = { ...outOfDistributionFigures(rs), probe: probes[m] ?? null };
    s.trust[m] = trustFigures(rs, suite);
    const lat = [...new Set(rs.map((r) => `${r.dataset}/${r.case}`))].map((k) => rs.find((r) => `${r.dataset}/${r.case}` === k)!.latency_ms);
    s.latency_ms[m] = { p50: percentile(lat, 50), p95: percentile(lat, 95) };
  }
  const evaluated = new Set(s.structures.map((r) => `${r.dataset}/${r.structure}`));
  return {
    targets_not_evaluated: Object.keys(suite.dice_targets).filter((k) => !evaluated.has(k)).sort(),
    structures: s.structures, presence: s.presence, robustness: s.robustness, calibration: s.calibration, conformal: s.conformal, ood: s.ood, trust: s.trust,
    paired: models.length > 1 ? pairedDifferences(records, s.structures, models[0], models[1], suite) : [],
    by_dataset: diceBy('dataset', records, models, suite).map(({ key, ...r }) => ({ ...r, dataset: key })),
    by_modality: diceBy('modality', records, models, suite).map(({ key, ...r }) => ({ ...r, modality: key })),
    latency_ms: s.latency_ms,
  };
}

const isPositive = (r: CaseRecord) => (r.set === 'canonical' || r.set === 'eval_only') && r.gt_present;
const isNegative = (r: CaseRecord) => r.set === 'absent' || r.set === 'nonsense' || ((r.set === 'canonical' || r.set === 'eval_only') && !r.gt_present);

/** One model's per-structure rows (canonical prompts on present cases, against the suite's bars) and how far the eval-only phrasings move Dice. */
function structureFigures(m: string, rs: CaseRecord[], suite: Suite): { rows: StructureSummary[]; robustness: Summary['robustness'][string] } {
  const rows: StructureSummary[] = [];
  const keys = [...new Set(rs.filter((r) => r.set === 'canonical').map((r) => `${r.dataset}/${r.structure}`))];
  const deltas: number[] = [], canon: number[] = [], evalo: number[] = [], spreads: number[] = [];
  for (const k of keys) {
    const [dataset, structure] = k.split('/');
    const can = rs.filter((r) => r.set === 'canonical' && r.dataset === dataset && r.structure === structure && r.gt_present);
    const ev = rs.filter((r) => r.set === 'eval_only' && r.dataset === dataset && r.structure === structure && r.gt_present);
    const dv = can.map((r) => r.dice!);
    const evd = ev.length ? mean(ev.map((r) => r.dice!)) : null;
    const hds = can.map((r) => r.hd95).filter((x): x is number => x !== null);
    const bar = suite.dice_targets[k];
    rows.push({
      model: m, dataset, structure, n: can.length, dice: mean(dv), dice_ci: bootstrapCi(dv, suite.bootstrap, suite.seed),
      iou: mean(can.map((r) => r.iou!)), hd95_median_px: hds.length ? percentile(hds, 50) : null, nsd: mean(can.map((r) => r.nsd!)),
      eval_only_dice: evd, eval_only_delta: evd === null ? null : evd - mean(dv),
      mask_threshold: can.length ? percentile(can.map((r) => r.mask_threshold), 50) : null,
      dice_target: bar ?? null,
      target_met: bar === undefined ? null : mean(dv) >= bar,
    });
    if (evd !== null && can.length) {
      canon.push(mean(dv)); evalo.push(evd); deltas.push(evd - mean(dv));
      const byCase = new Map<string, number[]>();
      for (const r of [...can, ...ev]) byCase.set(r.case, [...(byCase.get(r.case) ?? []), r.dice!]);
      for (const v of byCase.values()) if (v.length > 1) spreads.push(Math.max(...v) - Math.min(...v));
    }
  }
  return { rows, robustness: { canonical_dice: mean(canon), eval_only_dice: mean(evalo), delta: mean(deltas), mean_spread: mean(spreads) } };
}

/** Presence as a detector: AUROC of present against every kind of negative, accuracy at 0.5, and how often each kind of negative gets an empty mask. */
function presenceFigures(rs: CaseRecord[]): Summary['presence'][string] {
  const pos = rs.filter(isPositive), neg = rs.filter(isNegative);
  const inDs = rs.filter((r) => r.set === 'canonical' && !r.gt_present);
  const emptyRate = (list: CaseRecord[]) => mean(list.map((r) => (r.mask_empty ? 1 : 0)));
  return {
    auroc: auroc(pos.map((r) => r.presence), neg.map((r) => r.presence)),
    auroc_ci: null,
    accuracy: (pos.filter((r) => r.presence >= 0.5).length + neg.filter((r) => r.presence < 0.5).length) / Math.max(1, pos.length + neg.length),
    absent_empty_rate: emptyRate(rs.filter((r) => r.set === 'absent')),
    nonsense_empty_rate: emptyRate(rs.filter((r) => r.set === 'nonsense')),
    in_dataset_empty_rate: inDs.length ? emptyRate(inDs) : null,
    all_negatives_empty_rate: emptyRate(neg),
    present_mask_rate: mean(pos.map((r) => (r.mask_empty ? 0 : 1))),
    n_pos: pos.length,
    n_neg: neg.length,
  };
}

/** Mean recall of the conformal masks at each nominal level. */
function conformalFigures(rs: CaseRecord[]): Summary['conformal'][string] {
  const conf = rs.filter((r) => r.conformal_recall);
  const out: Summary['conformal'][string] = {};
  for (const level of [...new Set(conf.flatMap((r) => Object.keys(r.conformal_recall!)))].sort()) {
    const v = conf.map((r) => r.conformal_recall![level]).filter((x) => x !== undefined);
    out[level] = { nominal: Number(level), mean_recall: mean(v), n: v.length };
  }
  return out;
}

/** How many of the (in-distribution) eval images were flagged out of distribution, and the dataset flagged most often. */
function outOfDistributionFigures(rs: CaseRecord[]): Omit<Summary['ood'][string], 'probe'> {
  const images = new Map<string, boolean>();
  for (const r of rs) images.set(`${r.dataset}/${r.case}`, r.ood_flagged);
  const flagged = [...images.values()].filter(Boolean).length;
  const perSet = new Map<string, { images: number; flagged: number }>();
  for (const [key, f] of images) {
    const d = key.slice(0, key.indexOf('/'));
    const e = perSet.get(d) ?? { images: 0, flagged: 0 };
    e.images++;
    if (f) e.flagged++;
    perSet.set(d, e);
  }
  const worst = [...perSet.entries()].sort((a, b) => b[1].flagged / b[1].images - a[1].flagged / a[1].images)[0];
  return { images: images.size, flagged, false_flag_rate: images.size ? flagged / images.size : NaN, worst_dataset: worst ? { dataset: worst[0], ...worst[1] } : null };
}

/** Whether predicted quality finds the failures (Dice below the suite's failure bar): AUROC, risk against coverage, and what the verdicts do. */
function trustFigures(rs: CaseRecord[], suite: Suite): Summary['trust'][string] {
  const present = rs.filter((r) => r.set === 'canonical' && r.gt_present);
  const fail = present.filter((r) => r.dice! < suite.failure_dice);
  const okk = present.filter((r) => r.dice! >= suite.failure_dice);
  const sorted = [...present].sort((a, b) => b.predicted_quality - a.predicted_quality);
  const rc: { coverage: number; risk: number }[] = [];
  for (let k = 1; k <= 20; k++) {
    const n = Math.max(1, Math.round((k / 20) * sorted.length));
    const kept = sorted.slice(0, n);
    rc.push({ coverage: n / Math.max(1, sorted.length), risk: mean(kept.map((r) => (r.dice! < suite.failure_dice ? 1 : 0))) });
  }
  return {
    failure_auroc: auroc(fail.map((r) => 1 - r.predicted_quality), okk.map((r) => 1 - r.predicted_quality)),
    failures: fail.length,
    n: present.length,
    risk_coverage: rc,
    verdicts: {
      present_accept_or_review: mean(rs.filter(isPositive).map((r) => (r.verdict === 'reject' ? 0 : 1))),
      negatives_rejected: mean(rs.filter(isNegative).map((r) => (r.verdict === 'reject' ? 1 : 0))),
    },
  };
}

/** Mean canonical Dice on present cases per dataset or modality, per model. */
function diceBy(key: 'dataset' | 'modality', records: CaseRecord[], models: string[], suite: Suite): { model: string; n: number; dice: number; dice_ci: [number, number]; key: string }[] {
  const out: { model: string; n: number; dice: number; dice_ci: [number, number]; key: string }[] = [];
  for (const m of models) {
    const rs = records.filter((r) => r.model === m && r.set === 'canonical' && r.gt_present);
    for (const k of [...new Set(rs.map((r) => r[key]))].sort()) {
      const v = rs.filter((r) => r[key] === k).map((r) => r.dice!);
      out.push({ model: m, key: k, n: v.length, dice: mean(v), dice_ci: bootstrapCi(v, suite.bootstrap, suite.seed) });
    }
  }
  return out;
}

/** Per structure of model a, model b's Dice minus a's on the same cases, with a bootstrap interval. */
function pairedDifferences(records: CaseRecord[], structures: StructureSummary[], a: string, b: string, suite: Suite): Summary['paired'] {
  return structures.filter((x) => x.model === a).map((s) => {
    const ra = records.filter((r) => r.model === a && r.set === 'canonical' && r.gt_present && r.dataset === s.dataset && r.structure === s.structure);
    const diffs: number[] = [];
    for (const r of ra) {
      const rb = records.find((x) => x.model === b && x.set === 'canonical' && x.dataset === r.dataset && x.case === r.case && x.structure === r.structure);
      if (rb && rb.dice !== null) diffs.push(rb.dice - r.dice!);
    }
    return { a, b, structure: `${s.dataset}/${s.structure}`, n: diffs.length, mean_difference: mean(diffs), ci: bootstrapCi(diffs, suite.bootstrap, suite.seed) };
  });
}

/** Adds to `h` what a model answers with as served: its files, its input, and its calibration (a new calibration changes verdicts and calibrated scores). */
export function hashServedModel(h: Hash, ctx: ServiceContext, id: string): Hash {
  const e = ctx.pipeline.registry.entry(id);
  h.update(JSON.stringify(e.files)).update(JSON.stringify(e.input));
  const cal = e.calibration ? path.join(ctx.pipeline.registry.dirOf(e), e.calibration) : undefined;
  if (cal && existsSync(cal)) h.update(readFileSync(cal));
  return h;
}

/** Identifies exactly what was evaluated: model files, suite and data, for the results cache and the report. */
export function evalKey(ctx: ServiceContext, suite: Suite, split: string, limit: number | undefined): string {
  const h = createHash('sha256');
  for (const m of suite.models) hashServedModel(h, ctx, m);
  h.update(JSON.stringify(suite)).update(split).update(String(limit ?? ''));
  h.update(ctx.pipeline.vocabulary.data.version);
  return h.digest('hex');
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, node ${process.version}`;
}
