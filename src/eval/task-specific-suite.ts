import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../core/atomic-write.js';
import { decodeImage } from '../core/image/decode.js';
import { TaskNet } from '../core/models/task-net.js';
import { segment } from '../core/pipeline/segment.js';
import type { ServiceContext } from '../service/context.js';
import { hashServedModel } from './run-eval.js';
import { caseImagePath, readCaseMask, readDatasetIds, readDatasetMeta, readSplits } from './dataset-layout.js';
import { bootstrapCi, dice, mean, percentile, surfaceMetrics } from './metrics.js';

/**
 * The generalist against task-specific networks, dataset by dataset: on every test case, the
 * generalist as served (segment(): the structure's canonical name, the calibrated choices) and the
 * dataset's own net (models/train/task_baselines.py, in `baselines/<dataset>/`) on the same image;
 * per structure, over the cases where it is present: Dice of each with a bootstrap 95% interval,
 * the paired difference (generalist minus task net) with its bootstrap interval over cases, HD95
 * and NSD, and a verdict by that interval (ahead, level, behind); Dice by quartile of the
 * structure's area and of its contrast with its surroundings; one plot in report.html.
 */
export const TaskSpecificSuiteSchema = z.object({
  name: z.string(),
  description: z.string().default(''),
  protocol: z.literal('task-specific'),
  data_root: z.string(),
  baselines: z.string().describe('Folder with one task-specific net per dataset (<dataset>/model.onnx and meta.json); relative to the suite file.'),
  records: z.string().nullable().default(null).describe("Folder of each task net's per-case scores (<dataset>.json), written whenever the net is run and read where it is absent; relative to the suite file. Null: none kept."),
  datasets: z.union([z.literal('all'), z.array(z.string()).min(1)]).default('all'),
  split: z.enum(['train', 'val', 'test']).default('test'),
  limit_per_dataset: z.number().int().positive().nullable().default(null),
  nsd_tolerance_px: z.number().nonnegative().default(2),
  bootstrap: z.number().int().min(100).default(1000),
  seed: z.number().int().default(7),
  /** A structure is "behind" by more than this with an interval excluding 0 is a gap the model card must name. */
  gap: z.number().default(0.02),
});
export type TaskSpecificSuite = z.infer<typeof TaskSpecificSuiteSchema>;

/** Where a row's task-net figures came from: the net itself, its recorded per-case scores, or an earlier run's row. */
export type TaskSource = 'net' | 'record' | 'earlier run';

/** One structure of one case, as the task net scored it (what a record keeps). */
const RecordedScoreSchema = z.object({ area: z.number(), contrast: z.number(), dice: z.number(), hd95: z.number().nullable(), nsd: z.number() });

/**
 * A task net's per-case scores on one dataset's split, written whenever the net itself is run, so
 * that the table can be rebuilt (the generalist re-run and re-paired) on a machine without the net.
 */
export const TaskNetRecordSchema = z.object({
  format: z.literal('promptseg-task-net-scores/1'),
  dataset: z.string(),
  split: z.enum(['train', 'val', 'test']),
  nsd_tolerance_px: z.number(),
  /** The net's meta.json (onnx_sha256, the training command, val Dice). */
  net: z.record(z.string(), z.unknown()),
  /** Every case the net was run on; `scores` holds the structures present in each. */
  cases: z.array(z.string()),
  scores: z.record(z.string(), z.record(z.string(), RecordedScoreSchema)),
});
export type TaskNetRecord = z.infer<typeof TaskNetRecordSchema>;

/** One structure on one case, both models. */
export interface PairedCase {
  case: string;
  area: number;
  contrast: number;
  generalist: { dice: number; hd95: number | null; nsd: number };
  task: { dice: number; hd95: number | null; nsd: number };
}

export interface StructureRow {
  dataset: string;
  structure: string;
  /** Cases where the structure is present (what the figures are over). */
  cases: number;
  generalist: { dice: number; ci: [number, number]; hd95: number | null; nsd: number };
  task: { dice: number; ci: [number, number]; hd95: number | null; nsd: number };
  /** Generalist minus task net, mean over cases, with the bootstrap interval of that mean. */
  difference: { mean: number; ci: [number, number] };
  verdict: 'ahead' | 'level' | 'behind';
  /** Mean Dice of each by quartile of the structure's area (px), and of its contrast. */
  by_area: Breakdown[];
  by_contrast: Breakdown[];
  /** Where the task net's figures came from (see TaskSource); set by the evaluator. */
  task_source?: TaskSource;
  /** generalistFingerprint() of the generalist the row measured (null: not recorded). */
  generalist_fingerprint?: string | null;
}

export interface Breakdown {
  quartile: number;
  range: [number, number];
  cases: number;
  generalist: number;
  task: number;
}

/** The verdict of a paired difference's interval: ahead or behind when it excludes 0, else level. */
export function verdictOf(ci: [number, number]): StructureRow['verdict'] {
  return ci[0] > 0 ? 'ahead' : ci[1] < 0 ? 'behind' : 'level';
}

/** Figures of one structure from its paired cases. */
export function summariseStructure(dataset: string, structure: string, cases: PairedCase[], o: { bootstrap: number; seed: number }): StructureRow {
  const g = cases.map((c) => c.generalist.dice), t = cases.map((c) => c.task.dice);
  const d = cases.map((c) => c.generalist.dice - c.task.dice);
  const median = (v: (number | null)[]) => {
    const f = v.filter((x): x is number => x !== null);
    return f.length ? percentile(f, 50) : null;
  };
  const ci = bootstrapCi(d, o.bootstrap, o.seed);
  return {
    dataset,
    structure,
    cases: cases.length,
    generalist: { dice: mean(g), ci: bootstrapCi(g, o.bootstrap, o.seed), hd95: median(cases.map((c) => c.generalist.hd95)), nsd: mean(cases.map((c) => c.generalist.nsd)) },
    task: { dice: mean(t), ci: bootstrapCi(t, o.bootstrap, o.seed), hd95: median(cases.map((c) => c.task.hd95)), nsd: mean(cases.map((c) => c.task.nsd)) },
    difference: { mean: mean(d), ci },
    verdict: verdictOf(ci),
    by_area: quartiles(cases, (c) => c.area),
    by_contrast: quartiles(cases, (c) => c.contrast),
  };
}

/** Cases split into four groups by a value (quartile cut points; ties stay together), with each model's mean Dice. */
function quartiles(cases: PairedCase[], by: (c: PairedCase) => number): Breakdown[] {
  if (!cases.length) return [];
  const v = cases.map(by);
  const cuts = [25, 50, 75].map((p) => percentile(v, p));
  const out: Breakdown[] = [];
  for (let q = 0; q < 4; q++) {
    const inQ = cases.filter((c) => {
      const x = by(c);
      return (q === 0 || x > cuts[q - 1]) && (q === 3 || x <= cuts[q]);
    });
    if (!inQ.length) continue;
    const xs = inQ.map(by);
    out.push({ quartile: q + 1, range: [Math.min(...xs), Math.max(...xs)], cases: inQ.length, generalist: mean(inQ.map((c) => c.generalist.dice)), task: mean(inQ.map((c) => c.task.dice)) });
  }
  return out;
}

/** Mean grey level inside the mask against a 5 px ring around it, 0..1: how far the structure stands out. */
function contrastOf(image: { width: number; height: number; data: Uint8Array }, gt: Uint8Array): number {
  const { width: w, height: h, data } = image;
  let si = 0, ni = 0, so = 0, no = 0;
  const R = 5;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const grey = (data[i * 3] + data[i * 3 + 1] + data[i * 3 + 2]) / 3;
      if (gt[i]) {
        si += grey;
        ni++;
        continue;
      }
      let near = false;
      for (let dy = -R; dy <= R && !near; dy += R) for (let dx = -R; dx <= R && !near; dx += R) {
        const yy = y + dy, xx = x + dx;
        if (yy >= 0 && yy < h && xx >= 0 && xx < w && gt[yy * w + xx]) near = true;
      }
      if (near) {
        so += grey;
        no++;
      }
    }
  }
  return ni && no ? Math.abs(si / ni - so / no) / 255 : 0;
}

const surface = (a: Uint8Array, b: Uint8Array, w: number, h: number, tol: number) => {
  const s = surfaceMetrics(a, b, w, h, tol);
  return { hd95: Number.isFinite(s.hd95) ? s.hd95 : null, nsd: s.nsd };
};

interface DatasetRun {
  suite: TaskSpecificSuite;
  root: string;
  id: string;
  /** The split's cases (at most limit_per_dataset). */
  cases: string[];
}

const datasetRun = (suite: TaskSpecificSuite, root: string, id: string): DatasetRun => ({ suite, root, id, cases: readSplits(root, id)[suite.split].slice(0, suite.limit_per_dataset ?? undefined) });

/** The generalist as served on every case: for each structure present (k: its place in dataset.json), its ground truth, area, contrast and the generalist's scores. */
async function* generalistCases(ctx: ServiceContext, run: DatasetRun) {
  const meta = readDatasetMeta(run.root, run.id);
  const names = meta.structures.map((s) => ctx.pipeline.vocabulary.bySlug.get(s.slug)?.name ?? s.name);
  for (const c of run.cases) {
    const image = await decodeImage(readFileSync(caseImagePath(run.root, run.id, c, meta.image_ext)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
    const served = await segment(ctx.pipeline, { image, prompts: names });
    const present: { k: number; slug: string; gt: Uint8Array; area: number; contrast: number; generalist: PairedCase['generalist'] }[] = [];
    for (const [k, s] of meta.structures.entries()) {
      const gt = await readCaseMask(run.root, run.id, s.slug, c, { width: image.width, height: image.height });
      const area = gt.reduce((a, v) => a + (v ? 1 : 0), 0);
      const mask = served.results[k].mask;
      if (area) present.push({ k, slug: s.slug, gt, area, contrast: contrastOf(image, gt), generalist: { dice: dice(mask, gt), ...surface(mask, gt, image.width, image.height, run.suite.nsd_tolerance_px) } });
    }
    yield { c, image, present, structures: meta.structures.length };
  }
}

/** Both models on every case, the net's own scores kept as a record. */
async function pairWithNet(ctx: ServiceContext, run: DatasetRun, net: TaskNet): Promise<{ paired: PairedCase[][]; record: TaskNetRecord }> {
  const tol = run.suite.nsd_tolerance_px;
  const record: TaskNetRecord = { format: 'promptseg-task-net-scores/1', dataset: run.id, split: run.suite.split, nsd_tolerance_px: tol, net: { ...net.meta }, cases: run.cases, scores: {} };
  let paired: PairedCase[][] = [];
  for await (const { c, image, present, structures } of generalistCases(ctx, run)) {
    if (!paired.length) paired = Array.from({ length: structures }, () => []);
    const own = await net.segment(image);
    const W = image.width, H = image.height;
    for (const p of present) {
      const j = net.meta.structures.indexOf(p.slug);
      if (j < 0) throw new Error(`${run.id}: the task-specific net has no structure ${p.slug}`);
      const mine = Uint8Array.from(own[j].data, (v) => (v >= 0 ? 1 : 0)); // probability >= 0.5
      const task = { dice: dice(mine, p.gt), ...surface(mine, p.gt, W, H, tol) };
      (record.scores[c] ??= {})[p.slug] = { area: p.area, contrast: p.contrast, ...task };
      paired[p.k].push({ case: c, area: p.area, contrast: p.contrast, generalist: p.generalist, task });
    }
  }
  return { paired, record };
}

/** The generalist on every case, paired with the task net's recorded scores (the net itself not on this machine). */
async function pairWithRecord(ctx: ServiceContext, run: DatasetRun, record: TaskNetRecord, file: string): Promise<PairedCase[][]> {
  if (record.dataset !== run.id || record.split !== run.suite.split || record.nsd_tolerance_px !== run.suite.nsd_tolerance_px) {
    throw new Error(`${file} scores ${record.dataset}'s ${record.split} split at NSD ${record.nsd_tolerance_px} px; the suite asks for ${run.id}'s ${run.suite.split} split at ${run.suite.nsd_tolerance_px} px`);
  }
  const known = new Set(record.cases);
  const absent = run.cases.filter((c) => !known.has(c));
  if (absent.length) throw new Error(`${file} has no scores for ${absent.length} case(s) of the suite (${absent.slice(0, 3).join(', ')}${absent.length > 3 ? ', ...' : ''}): run the suite with the net in place to record them`);
  let paired: PairedCase[][] = [];
  for await (const { c, present, structures } of generalistCases(ctx, run)) {
    if (!paired.length) paired = Array.from({ length: structures }, () => []);
    for (const p of present) {
      const task = record.scores[c]?.[p.slug];
      if (!task) throw new Error(`${file} has no score for ${c}/${p.slug}, which is present in the ground truth`);
      paired[p.k].push({ case: c, area: p.area, contrast: p.contrast, generalist: p.generalist, task: { dice: task.dice, hd95: task.hd95, nsd: task.nsd } });
    }
  }
  return paired;
}

/** What identifies the generalist as served (the default model's files, input and calibration): a row measured it only if it carries this. */
export function generalistFingerprint(ctx: ServiceContext): string {
  return hashServedModel(createHash('sha256'), ctx, ctx.pipeline.registry.defaultId).digest('hex').slice(0, 16);
}

interface EarlierRun {
  suite?: { split?: string; nsd_tolerance_px?: number };
  generalist?: string;
  nets?: Record<string, unknown>;
  rows?: (StructureRow & { generalist_fingerprint?: string })[];
}

/** Rows of an earlier run of the same suite (same split and tolerance) in the output folder, for datasets with neither a net nor a record here. */
function readEarlierRun(outDir: string, suite: TaskSpecificSuite): EarlierRun {
  const file = path.join(outDir, 'results.json');
  if (!existsSync(file)) return {};
  const earlier = JSON.parse(readFileSync(file, 'utf8')) as EarlierRun;
  return earlier.suite?.split === suite.split && earlier.suite?.nsd_tolerance_px === suite.nsd_tolerance_px ? earlier : {};
}

export async function evaluateTaskSpecific(ctx: ServiceContext, suiteFile: string, outDir: string, progress?: (msg: string) => void): Promise<{ files: string[]; rows: StructureRow[] }> {
  const suite = TaskSpecificSuiteSchema.parse(JSON.parse(readFileSync(suiteFile, 'utf8')));
  const root = path.resolve(path.dirname(suiteFile), suite.data_root);
  const baselines = path.resolve(path.dirname(suiteFile), suite.baselines);
  const records = suite.records === null ? undefined : path.resolve(path.dirname(suiteFile), suite.records);
  const ids = suite.datasets === 'all' ? readDatasetIds(root) : suite.datasets;
  const earlier = readEarlierRun(outDir, suite);
  const generalist = generalistFingerprint(ctx);
  const rows: StructureRow[] = [];
  const missing: string[] = [];
  const nets: Record<string, unknown> = {};
  for (const id of ids) {
    const recordFile = records && path.join(records, `${id}.json`);
    let paired: PairedCase[][], source: TaskSource;
    if (existsSync(path.join(baselines, id, 'model.onnx'))) {
      const net = await TaskNet.open(path.join(baselines, id), ctx.config.PROMPTSEG_THREADS);
      nets[id] = { ...net.meta, dir: path.relative(process.cwd(), net.dir) };
      try {
        const r = await pairWithNet(ctx, datasetRun(suite, root, id), net);
        paired = r.paired;
        if (recordFile) {
          mkdirSync(records, { recursive: true });
          writeFileAtomic(recordFile, JSON.stringify(r.record) + '\n');
        }
      } finally {
        await net.dispose();
      }
      source = 'net';
    } else if (recordFile && existsSync(recordFile)) {
      const parsed = TaskNetRecordSchema.safeParse(JSON.parse(readFileSync(recordFile, 'utf8')));
      if (!parsed.success) throw new Error(`${recordFile}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      nets[id] = { ...parsed.data.net, record: path.relative(process.cwd(), recordFile) };
      progress?.(`${id}: no task-specific net in ${path.join(baselines, id)}; its recorded scores ${recordFile}`);
      paired = await pairWithRecord(ctx, datasetRun(suite, root, id), parsed.data, recordFile);
      source = 'record';
    } else {
      const kept = (earlier.rows ?? []).filter((r) => r.dataset === id);
      if (kept.length) {
        progress?.(`${id}: neither a task-specific net nor its recorded scores; ${kept.length} row(s) kept from the earlier run in ${outDir}`);
        nets[id] = earlier.nets?.[id];
        for (const r of kept) rows.push({ ...r, task_source: 'earlier run', generalist_fingerprint: r.generalist_fingerprint ?? earlier.generalist ?? null });
      } else {
        missing.push(id);
        progress?.(`${id}: no task-specific net in ${path.join(baselines, id)}; skipped`);
      }
      continue;
    }
    for (const [k, s] of readDatasetMeta(root, id).structures.entries()) {
      const row = { ...summariseStructure(id, s.slug, paired[k] ?? [], suite), task_source: source, generalist_fingerprint: generalist };
      rows.push(row);
      progress?.(`${id}/${s.slug}: generalist ${row.generalist.dice.toFixed(3)}, task net ${row.task.dice.toFixed(3)} (${source}), difference ${row.difference.mean.toFixed(3)} [${row.difference.ci.map((v) => v.toFixed(3)).join(', ')}]: ${row.verdict} (${row.cases} cases)`);
    }
  }
  mkdirSync(outDir, { recursive: true });
  const files = [path.join(outDir, 'results.json'), path.join(outDir, 'report.md'), path.join(outDir, 'report.html')];
  const command = `node dist/main/cli.js eval ${path.relative(process.cwd(), suiteFile)}${outDir ? ` --out ${path.relative(process.cwd(), outDir)}` : ''}`;
  writeFileAtomic(files[0], JSON.stringify({ suite, command, generalist, nets, missing, rows }, null, 1));
  writeFileAtomic(files[1], reportMarkdown(suite, rows, missing, command, generalist));
  writeFileAtomic(files[2], reportHtml(suite, rows, missing, command, generalist));
  return { files, rows };
}

const f3 = (v: number | null) => (v === null || Number.isNaN(v) ? '–' : v.toFixed(3));
const f1 = (v: number | null) => (v === null ? '–' : v.toFixed(1));

function headline(rows: StructureRow[], gap: number): string[] {
  const level = rows.filter((r) => r.verdict !== 'behind').length;
  const big = rows.filter((r) => r.cases >= 20);
  const within = big.filter((r) => r.difference.mean >= -gap).length;
  const gaps = rows.filter((r) => r.verdict === 'behind' && r.difference.mean < -gap);
  return [
    `Level with or ahead of the task-specific net on ${level} of ${rows.length} structures (${rows.length ? ((100 * level) / rows.length).toFixed(0) : 0}%; goal 80%).`,
    `Within ${gap} Dice of it on ${within} of ${big.length} structures with at least 20 test cases (goal: all).`,
    gaps.length ? `Behind by more than ${gap} with an interval excluding 0: ${gaps.map((r) => `${r.dataset}/${r.structure} (${f3(r.difference.mean)})`).join(', ')}.` : `No structure is behind by more than ${gap} with an interval excluding 0.`,
  ];
}

/** Which rows' task-net figures are not from the net run here, and which rows measured another generalist. */
function provenance(suite: TaskSpecificSuite, rows: StructureRow[], generalist: string): string[] {
  const datasets = (source: TaskSource) => [...new Set(rows.filter((r) => r.task_source === source).map((r) => r.dataset))];
  const out: string[] = [];
  const recorded = datasets('record');
  if (recorded.length) out.push(`Task nets not on this machine, paired through their recorded per-case scores (${suite.records ?? ''}/<dataset>.json): ${recorded.join(', ')}.`);
  const kept = datasets('earlier run');
  if (kept.length) out.push(`Rows kept from an earlier run of this suite (neither the net nor its recorded scores here; retrain the net to re-pair them): ${kept.join(', ')}.`);
  const other = [...new Set(rows.filter((r) => r.generalist_fingerprint !== generalist).map((r) => `${r.dataset} (${r.generalist_fingerprint ?? 'generalist not recorded'})`))];
  if (other.length) out.push(`Measured against another generalist than this run's: ${other.join(', ')}.`);
  return out;
}

function reportMarkdown(suite: TaskSpecificSuite, rows: StructureRow[], missing: string[], command: string, generalist: string): string {
  const l = [`# ${suite.name}`, '', suite.description, '', `Made by \`${command}\`, generalist ${generalist} (its models' files and calibrations). Split ${suite.split}; per structure, the cases where it is present. Difference = generalist minus task net (paired, bootstrap 95% interval over cases); verdict by that interval. HD95: median (px); NSD at ${suite.nsd_tolerance_px} px: mean. Task net: "net" when it ran here, "record" when its recorded per-case scores stood in for it.`, ''];
  l.push(...headline(rows, suite.gap), '');
  const notes = provenance(suite, rows, generalist);
  if (notes.length) l.push(...notes, '');
  if (missing.length) l.push(`No task-specific net for: ${missing.join(', ')} (make them with \`models/train/baselines.sh\`).`, '');
  l.push('| dataset / structure | n | generalist Dice [95% CI] | task net Dice [95% CI] | difference [95% CI] | verdict | HD95 g / t | NSD g / t | task net |', '|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) l.push(`| ${r.dataset} / ${r.structure} | ${r.cases} | ${f3(r.generalist.dice)} [${f3(r.generalist.ci[0])}, ${f3(r.generalist.ci[1])}] | ${f3(r.task.dice)} [${f3(r.task.ci[0])}, ${f3(r.task.ci[1])}] | ${f3(r.difference.mean)} [${f3(r.difference.ci[0])}, ${f3(r.difference.ci[1])}] | ${r.verdict} | ${f1(r.generalist.hd95)} / ${f1(r.task.hd95)} | ${f3(r.generalist.nsd)} / ${f3(r.task.nsd)} | ${r.task_source ?? 'net'} |`);
  for (const [title, key] of [['structure area (px)', 'by_area'], ['contrast with the surroundings (0-1)', 'by_contrast']] as const) {
    l.push('', `## Dice by quartile of ${title}`, '', '| dataset / structure | Q1 g / t | Q2 g / t | Q3 g / t | Q4 g / t |', '|---|---|---|---|---|');
    for (const r of rows) l.push(`| ${r.dataset} / ${r.structure} | ${[1, 2, 3, 4].map((q) => r[key].find((b) => b.quartile === q)).map((b) => (b ? `${f3(b.generalist)} / ${f3(b.task)} (n ${b.cases})` : '–')).join(' | ')} |`);
  }
  return l.join('\n') + '\n';
}

/** The report with one plot: each structure's generalist Dice against its task net's, the diagonal being level. */
function reportHtml(suite: TaskSpecificSuite, rows: StructureRow[], missing: string[], command: string, generalist: string): string {
  const S = 420, pad = 40, px = (v: number) => pad + v * (S - 2 * pad), py = (v: number) => S - pad - v * (S - 2 * pad);
  const colour = { ahead: '#1a7f37', level: '#555', behind: '#cf222e' };
  const dots = rows.map((r) => `<circle cx="${px(r.task.dice).toFixed(1)}" cy="${py(r.generalist.dice).toFixed(1)}" r="${(3 + Math.min(6, Math.sqrt(r.cases) / 2)).toFixed(1)}" fill="${colour[r.verdict]}" fill-opacity="0.7"><title>${r.dataset}/${r.structure}: generalist ${f3(r.generalist.dice)}, task net ${f3(r.task.dice)} (${r.cases} cases, ${r.verdict})</title></circle>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}" role="img" aria-label="generalist Dice against task-specific Dice per structure"><rect x="${pad}" y="${pad}" width="${S - 2 * pad}" height="${S - 2 * pad}" fill="none" stroke="#999"/><line x1="${px(0)}" y1="${py(0)}" x2="${px(1)}" y2="${py(1)}" stroke="#999" stroke-dasharray="4 3"/>${[0, 0.5, 1].map((v) => `<text x="${px(v)}" y="${S - pad + 16}" font-size="11" text-anchor="middle">${v}</text><text x="${pad - 6}" y="${py(v) + 4}" font-size="11" text-anchor="end">${v}</text>`).join('')}<text x="${S / 2}" y="${S - 6}" font-size="12" text-anchor="middle">task-specific net Dice</text><text x="12" y="${S / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 12 ${S / 2})">generalist Dice</text>${dots}</svg>`;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const md = reportMarkdown(suite, rows, missing, command, generalist);
  return `<!doctype html><html lang="en"><meta charset="utf-8"><title>${esc(suite.name)}</title><body style="font-family:sans-serif;max-width:1100px;margin:2em auto"><h1>${esc(suite.name)}</h1><p>${headline(rows, suite.gap).map(esc).join('<br>')}</p><p>Each dot a structure (size: cases); above the diagonal the generalist is ahead. Green: ahead, grey: level, red: behind (by the paired interval).</p>${svg}<pre style="white-space:pre-wrap">${esc(md)}</pre></body></html>\n`;
}
