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


/** Runs every model of the suite over every case of the chosen split through the service API. */
export interface PixelSamples {
  /** Calibrated pixel probabilities (what the service returns) and labels. */
  p: number[];
  y: number[];
  /** The same pixels before temperature scaling, when the model has a calibration. */
  raw: number[];
}

export type ProbeResults = Record<string, { images: number; flagged: number; by_kind: Record<string, { images: number; flagged: number }> }>;

export async function runEval(ctx: ServiceContext, suite: Suite, dataRoot: string, opts: { split?: string; limit?: number; progress?: EvalProgress } = {}): Promise<{ records: CaseRecord[]; calibrationPixels: Record<string, PixelSamples>; probes: ProbeResults }> {
  ctx.keepFloatMaps = true; // the calibration figures sample the float probabilities
  const split = opts.split ?? suite.split;
  const vocab = ctx.pipeline.vocabulary;
  const ids = suite.datasets === 'all' ? readDatasetIds(dataRoot) : suite.datasets;
  const limit = opts.limit ?? suite.limit_per_dataset ?? Infinity;
  const plan: { ds: DatasetMeta; cases: string[] }[] = [];
  for (const id of ids) {
    const dir = path.join(dataRoot, id);
    if (!existsSync(path.join(dir, 'dataset.json'))) throw new Error(`dataset ${id} not found under ${dataRoot}`);
    const ds = readDatasetMeta(dataRoot, id);
    const splits = readSplits(dataRoot, id);
    if (!Array.isArray(splits[split])) throw new Error(`dataset ${id} has no split "${split}"`);
    plan.push({ ds, cases: spread(splits[split], limit) });
  }
  const total = plan.reduce((s, p) => s + p.cases.length, 0) * suite.models.length;
  const records: CaseRecord[] = [];
  const calib: Record<string, PixelSamples> = {};
  const op = segmentOperation as unknown as Operation;
  let done = 0;
  for (const model of suite.models) {
    ctx.pipeline.registry.entry(model);
    calib[model] = { p: [], y: [], raw: [] };
    const cal = calibrationFor(ctx.pipeline, ctx.pipeline.registry.entry(model));
    const rnd = seededRandom(suite.seed);
    for (const { ds, cases } of plan) {
      const otherRegion = vocab.absentFor({ id: ds.id, modality: ds.modality, structures: ds.structures.map((s) => s.slug) });
      for (const [ci, c] of cases.entries()) {
        const bytes = await readFile(caseImagePath(dataRoot, ds.id, c, ds.image_ext));
        const prompts: { prompt: string; structure: string | null; set: PromptSet }[] = [];
        for (const s of ds.structures) {
          const v = vocab.bySlug.get(s.slug);
          const name = v?.name ?? s.name;
          if (suite.prompt_sets.includes('canonical')) prompts.push({ prompt: name, structure: s.slug, set: 'canonical' });
          if (suite.prompt_sets.includes('eval_only') && v) {
            const options = [...vocab.data.templates.eval.map((t) => t.replace('{s}', name).replace('{m}', vocab.data.datasets.find((d) => d.id === ds.id)?.modality_words[0] ?? 'image')), ...v.eval_synonyms];
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
        const t0 = performance.now();
        const r = await runOperation(ctx, op, { image: { base64: bytes.toString('base64') }, prompts: prompts.map((p) => p.prompt), model, threshold: suite.threshold, tta: suite.tta, tta_image: suite.tta_image }, { via: 'eval' });
        const latency = performance.now() - t0;
        if (!r.ok) throw new Error(`${ds.id}/${c}: ${r.error.message}`);
        const out = r.value as SegmentOutput;
        const stored = ctx.results.get(out.result_id)!.result;
        const { width: w, height: h } = stored;
        const gts = new Map<string, Uint8Array>();
        for (const s of ds.structures) gts.set(s.slug, await readCaseMask(dataRoot, ds.id, s.slug, c, { width: w, height: h }));
        prompts.forEach((p, i) => {
          const res = stored.results[i];
          let probMemo: Float32Array | undefined;
          const prob = () => (probMemo ??= probabilityMap(res));
          const gt = p.set === 'canonical' || p.set === 'eval_only' ? gts.get(p.structure!)! : undefined;
          const gtPresent = !!gt && gt.some((x) => x === 1);
          let d: number | null = null, io: number | null = null, hd: number | null = null, nsd: number | null = null;
          let units: 'px' | 'mm' = 'px';
          if (gt && gtPresent) {
            d = dice(res.mask, gt);
            io = iou(res.mask, gt);
            // with known spacing the surface metrics are in mm, else in pixels
            const sp = ctx.results.get(out.result_id)?.spacing;
            const sm = sp ? surfaceMetrics(res.mask, gt, w, h, suite.nsd_tolerance_mm, sp) : surfaceMetrics(res.mask, gt, w, h, suite.nsd_tolerance_px);
            units = sp ? 'mm' : 'px';
            hd = Number.isFinite(sm.hd95) ? sm.hd95 : null;
            nsd = sm.nsd;
            if (p.set === 'canonical' && suite.calibration_pixels_per_case > 0) {
              for (let k = 0; k < suite.calibration_pixels_per_case; k++) {
                const j = Math.floor(rnd() * w * h);
                calib[model].p.push(prob()[j]);
                calib[model].y.push(gt[j]);
                if (cal) calib[model].raw.push(sigmoid(logit(prob()[j]) * cal.pixel_temperature));
              }
            }
          }
          let conformalRecall: Record<string, number> | undefined;
          if (gt && gtPresent && p.set === 'canonical' && cal?.conformal[p.structure!]) {
            conformalRecall = {};
            // as served with conformal_recall: the mask is every pixel at or above the level's threshold
            for (const [level, th] of Object.entries(cal.conformal[p.structure!])) {
              let hit = 0, total = 0;
              for (let j = 0; j < gt.length; j++) {
                if (!gt[j]) continue;
                total++;
                if (prob()[j] >= th) hit++;
              }
              conformalRecall[level] = hit / total;
            }
          }
          records.push({
            conformal_recall: conformalRecall,
            surface_units: units,
            ood_flagged: stored.image.outOfDistribution,
            ood_score: stored.image.oodScore,
            model, dataset: ds.id, modality: ds.modality, case: c, structure: p.structure, set: p.set, prompt: p.prompt,
            gt_present: gtPresent, presence: res.presence, mask_empty: res.stats.areaPx === 0,
            dice: d, iou: io, hd95: hd, nsd, predicted_quality: res.predictedQuality, mask_threshold: res.maskThreshold, verdict: res.verdict, latency_ms: Math.round(latency),
          });
        });
        opts.progress?.(++done, total, `${model} ${ds.id}`);
      }
    }
  }
  // the out-of-distribution probe: non-medical images made by code should be flagged
  const probes: ProbeResults = {};
  const probeImages = suite.ood_probe_per_kind > 0 ? await nonMedicalImages(suite.ood_probe_per_kind, suite.seed) : [];
  for (const model of probeImages.length ? suite.models : []) {
    const p = (probes[model] = { images: 0, flagged: 0, by_kind: {} as Record<string, { images: number; flagged: number }> });
    for (const img of probeImages) {
      const r = await runOperation(ctx, op, { image: { base64: img.png.toString('base64') }, prompts: ['heart'], model }, { via: 'eval' });
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
  return { records, calibrationPixels: calib, probes };
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
  const structures: StructureSummary[] = [];
  const presence: Summary['presence'] = {};
  const robustness: Summary['robustness'] = {};
  const calibrationOut: Summary['calibration'] = {};
  const trust: Summary['trust'] = {};
  const latency: Summary['latency_ms'] = {};
  const conformal: Summary['conformal'] = {};
  const ood: Summary['ood'] = {};
  for (const m of models) {
    const rs = records.filter((r) => r.model === m);
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
      structures.push({
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
    robustness[m] = { canonical_dice: mean(canon), eval_only_dice: mean(evalo), delta: mean(deltas), mean_spread: mean(spreads) };
    const pos = rs.filter((r) => (r.set === 'canonical' || r.set === 'eval_only') && r.gt_present);
    const neg = rs.filter((r) => r.set === 'absent' || r.set === 'nonsense' || ((r.set === 'canonical' || r.set === 'eval_only') && !r.gt_present));
    const inDs = rs.filter((r) => r.set === 'canonical' && !r.gt_present);
    const au = auroc(pos.map((r) => r.presence), neg.map((r) => r.presence));
    presence[m] = {
      auroc: au,
      auroc_ci: null,
      accuracy: (pos.filter((r) => r.presence >= 0.5).length + neg.filter((r) => r.presence < 0.5).length) / Math.max(1, pos.length + neg.length),
      absent_empty_rate: mean(rs.filter((r) => r.set === 'absent').map((r) => (r.mask_empty ? 1 : 0))),
      nonsense_empty_rate: mean(rs.filter((r) => r.set === 'nonsense').map((r) => (r.mask_empty ? 1 : 0))),
      in_dataset_empty_rate: inDs.length ? mean(inDs.map((r) => (r.mask_empty ? 1 : 0))) : null,
      all_negatives_empty_rate: mean(neg.map((r) => (r.mask_empty ? 1 : 0))),
      present_mask_rate: mean(pos.map((r) => (r.mask_empty ? 0 : 1))),
      n_pos: pos.length,
      n_neg: neg.length,
    };
    const c = calib[m];
    if (c && c.p.length) calibrationOut[m] = { ...calibration(c.p, c.y, 10), ece_uncalibrated: c.raw.length ? calibration(c.raw, c.y, 10).ece : null };
    const conf = rs.filter((r) => r.conformal_recall);
    conformal[m] = {};
    for (const level of [...new Set(conf.flatMap((r) => Object.keys(r.conformal_recall!)))].sort()) {
      const v = conf.map((r) => r.conformal_recall![level]).filter((x) => x !== undefined);
      conformal[m][level] = { nominal: Number(level), mean_recall: mean(v), n: v.length };
    }
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
    ood[m] = { images: images.size, flagged, false_flag_rate: images.size ? flagged / images.size : NaN, worst_dataset: worst ? { dataset: worst[0], ...worst[1] } : null, probe: probes[m] ?? null };
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
    trust[m] = {
      failure_auroc: auroc(fail.map((r) => 1 - r.predicted_quality), okk.map((r) => 1 - r.predicted_quality)),
      failures: fail.length,
      n: present.length,
      risk_coverage: rc,
      verdicts: {
        present_accept_or_review: mean(pos.map((r) => (r.verdict === 'reject' ? 0 : 1))),
        negatives_rejected: mean(neg.map((r) => (r.verdict === 'reject' ? 1 : 0))),
      },
    };
    const lat = [...new Set(rs.map((r) => `${r.dataset}/${r.case}`))].map((k) => rs.find((r) => `${r.dataset}/${r.case}` === k)!.latency_ms);
    latency[m] = { p50: percentile(lat, 50), p95: percentile(lat, 95) };
  }
  const group = (key: 'dataset' | 'modality') => {
    const out: { model: string; n: number; dice: number; dice_ci: [number, number]; key: string }[] = [];
    for (const m of models) {
      const rs = records.filter((r) => r.model === m && r.set === 'canonical' && r.gt_present);
      for (const k of [...new Set(rs.map((r) => r[key]))].sort()) {
        const v = rs.filter((r) => r[key] === k).map((r) => r.dice!);
        out.push({ model: m, key: k, n: v.length, dice: mean(v), dice_ci: bootstrapCi(v, suite.bootstrap, suite.seed) });
      }
    }
    return out;
  };
  const byDataset = group('dataset').map(({ key, ...r }) => ({ ...r, dataset: key }));
  const byModality = group('modality').map(({ key, ...r }) => ({ ...r, modality: key }));
  const paired: Summary['paired'] = [];
  if (models.length > 1) {
    const [a, b] = models;
    for (const s of structures.filter((x) => x.model === a)) {
      const ra = records.filter((r) => r.model === a && r.set === 'canonical' && r.gt_present && r.dataset === s.dataset && r.structure === s.structure);
      const diffs: number[] = [];
      for (const r of ra) {
        const rb = records.find((x) => x.model === b && x.set === 'canonical' && x.dataset === r.dataset && x.case === r.case && x.structure === r.structure);
        if (rb && rb.dice !== null) diffs.push(rb.dice - r.dice!);
      }
      paired.push({ a, b, structure: `${s.dataset}/${s.structure}`, n: diffs.length, mean_difference: mean(diffs), ci: bootstrapCi(diffs, suite.bootstrap, suite.seed) });
    }
  }
  const evaluated = new Set(structures.map((r) => `${r.dataset}/${r.structure}`));
  const targetsNotEvaluated = Object.keys(suite.dice_targets).filter((k) => !evaluated.has(k)).sort();
  return { targets_not_evaluated: targetsNotEvaluated, structures, presence, robustness, calibration: calibrationOut, conformal, ood, trust, paired, by_dataset: byDataset, by_modality: byModality, latency_ms: latency };
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
