import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { segment } from '../core/pipeline/segment.js';
import { seededRandom } from '../core/stats.js';
import type { ServiceContext } from '../service/context.js';
import { drawCases, openLabelledFolder } from '../service/labelled-folder.js';
import { bootstrapCi, dice, mean } from './metrics.js';
import { readSplits, summariseK, testDice, type FewShotRun } from './few-shot.js';
import { adaptHead, DEFAULT_RECIPE } from '../core/adapters/adapt.js';
import type { LabelledImage } from '../core/adapters/support.js';
import type { SegmentationModel } from '../core/models/model.js';

/**
 * The few-shot protocol (issue: few-shot adaptation): for each dataset, the built-in model
 * zero-shot, adapters fitted on k = 1, 5, 10, 20 and all train images (several seeded draws
 * each, calibrated on val), and a task-specific U-Net trained on the same images
 * (models/train/fewshot_unet.py, run once; its results file is read when present), all on test.
 */
export const FewShotSuiteSchema = z.object({
  name: z.string(),
  description: z.string().default(''),
  protocol: z.literal('few-shot'),
  datasets: z.array(
    z.object({
      data_root: z.string().describe('Folder holding the dataset (medseg2d layout); relative to the suite file.'),
      id: z.string(),
      structure: z.string(),
      zero_shot_prompt: z.string().describe('What the built-in model is asked without adaptation: the closest vocabulary word, or the structure\'s own name.'),
      role: z.enum(['unseen', 'known']).describe('unseen: a structure no shipped model was trained on; known: a sanity check on one the model knows.'),
    }),
  ),
  ks: z.array(z.union([z.number().int().positive(), z.literal('all')])),
  draws: z.number().int().positive().default(3),
  adaptation: z
    .object({ grid: z.number().int().min(8).max(512).optional(), hidden: z.number().int().min(1).max(256).optional() })
    .strict()
    .default({})
    .describe('Changes to the adaptation recipe, for comparing recipes on the same draws (default: none, what promptseg adapt does).'),
  baseline_results: z.string().optional().describe('The task-specific U-Nets\' results (fewshot_unet.py), relative to the suite file.'),
  bars: z.array(z.object({ dataset: z.string(), structure: z.string().optional().describe('Which of the dataset\'s entries, where the suite has several.'), k: z.union([z.number(), z.literal('all')]), min_dice: z.number().optional(), vs_baseline: z.enum(['at_least', 'within_5_points']).optional() })).default([]),
});
export type FewShotSuite = z.infer<typeof FewShotSuiteSchema>;

export interface FewShotPlanEntry {
  dataset: string;
  data_root: string;
  structure: string;
  k: number | 'all';
  draw: number;
  support: string[];
  val: string[];
  test: string[];
}

/** The support sets every method uses: the same seeded draws as the adapters (few-shot.ts). */
export function fewShotPlan(suite: FewShotSuite, suiteDir: string): FewShotPlanEntry[] {
  const plan: FewShotPlanEntry[] = [];
  for (const d of suite.datasets) {
    const root = path.resolve(suiteDir, d.data_root, d.id);
    const folder = openLabelledFolder(root, d.structure);
    const train = folder.splits.train;
    for (const k of suite.ks) {
      if (k !== 'all' && k >= train.length) continue; // k = all covers it
      // every draw of k = all holds the same images; its draws differ in the adapter's seed only
      const draws = suite.draws;
      for (let draw = 0; draw < draws; draw++) {
        plan.push({ dataset: d.id, data_root: root, structure: d.structure, k, draw, support: drawCases(train, k === 'all' ? undefined : k, seededRandom(1000 * draw + (k === 'all' ? 999 : k))), val: folder.splits.val ?? [], test: folder.splits.test ?? [] });
      }
    }
  }
  return plan;
}

/** One suite entry (a dataset's structure), as runs, zero-shot figures and bars name it. */
const entryKey = (dataset: string, structure: string): string => `${dataset}|${structure}`;
/** One adaptation of an entry: its k, draw and support images. */
const runKey = (r: { dataset: string; structure: string; k: number | 'all'; draw: number; support: string[] }): string => `${entryKey(r.dataset, r.structure)}|${r.k}|${r.draw}|${r.support.join(',')}`;

interface ZeroShot {
  prompt: string;
  dice: number;
  ci: [number, number];
  rejected: number;
  cases: number;
}

interface BaselineRun {
  dataset: string;
  /** The dataset's structure (absent: the dataset's only entry in the suite). */
  structure?: string;
  k: number | 'all';
  draw: number;
  test_dice: number[];
}

type Run = FewShotRun & { dataset: string; structure: string };
type Entry = FewShotSuite['datasets'][number];
type Bar = { dataset: string; structure?: string; k: number | 'all'; few_shot: number | null; task_specific: number | null; met: boolean | null; min_dice?: number; vs_baseline?: string };

/**
 * Runs a few-shot suite and writes results.json, report.md and report.html to outDir: per entry
 * the zero-shot figure and one adapter per planned draw (runs of an earlier results.json with the
 * same support images, model files and recipe are kept, not run again), then the table beside
 * the task-specific U-Nets' results and the suite's bars.
 */
export async function evaluateFewShot(ctx: ServiceContext, suiteFile: string, outDir: string, progress?: (msg: string) => void): Promise<{ files: string[] }> {
  const suite = FewShotSuiteSchema.parse(JSON.parse(readFileSync(suiteFile, 'utf8')));
  const suiteDir = path.dirname(suiteFile);
  const plan = fewShotPlan(suite, suiteDir);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'plan.json'), JSON.stringify(plan, null, 1));
  const model = ctx.pipeline.registry.get();
  const fingerprint = JSON.stringify(model.entry.files);
  const recipe = JSON.stringify({ ...DEFAULT_RECIPE, ...suite.adaptation });
  const reusable = earlierRuns(path.join(outDir, 'results.json'), fingerprint, recipe);
  const runs: Run[] = [];
  const zero: Record<string, ZeroShot> = {};
  for (const d of suite.datasets) {
    const root = path.resolve(suiteDir, d.data_root, d.id);
    const folder = openLabelledFolder(root, d.structure);
    const cases = await readSplits(folder, ['train', 'val', 'test'], ctx.config.PROMPTSEG_MAX_PIXELS);
    const test = (folder.splits.test ?? []).map((c) => cases.get(c)!).filter((t) => t.mask.some((v) => v));
    const key = entryKey(d.id, d.structure);
    zero[key] = await zeroShot(ctx, d, test, progress);
    const val = (folder.splits.val ?? []).map((c) => cases.get(c)!);
    for (const p of plan.filter((x) => entryKey(x.dataset, x.structure) === key)) {
      runs.push(reusable.get(runKey(p)) ?? (await adaptationRun(model, suite, p, cases, val, test, progress)));
    }
  }
  const table = fewShotTable(suite, runs, zero, baselineRuns(suite, suiteDir));
  const bars = barsOf(suite, table);
  const files = [path.join(outDir, 'results.json'), path.join(outDir, 'report.md'), path.join(outDir, 'report.html')];
  writeFileSync(files[0], JSON.stringify({ suite, model_files: fingerprint, adapter_recipe: recipe, machine: `${(await import('node:os')).cpus().length} cores`, table, bars, runs }, null, 1));
  const md = fewShotMarkdown(suite, table, bars);
  writeFileSync(files[1], md);
  writeFileSync(files[2], `<!doctype html><meta charset="utf-8"><title>${suite.name}</title><style>body{font:14px system-ui;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}pre{white-space:pre-wrap}</style>${diceVersusK(table)}<pre>${md.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</pre>`);
  return { files };
}

/** The runs of an earlier results.json that a rerun may keep: only when its model files and adaptation recipe are these. */
function earlierRuns(resultsFile: string, fingerprint: string, recipe: string): Map<string, Run> {
  const earlier = existsSync(resultsFile) ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as { model_files?: string; adapter_recipe?: string; runs: Run[] }) : undefined;
  return new Map((earlier?.model_files === fingerprint && earlier.adapter_recipe === recipe ? earlier.runs : []).map((r) => [runKey(r), r]));
}

/** The built-in model, unadapted, asked the entry's zero-shot prompt on every present test case. */
async function zeroShot(ctx: ServiceContext, d: Entry, test: LabelledImage[], progress?: (msg: string) => void): Promise<ZeroShot> {
  const zd: number[] = [];
  let rejected = 0;
  for (const t of test) {
    const r = (await segment(ctx.pipeline, { image: t.image, prompts: [d.zero_shot_prompt] })).results[0];
    if (r.verdict === 'reject') rejected++;
    zd.push(dice(r.mask, t.mask));
  }
  progress?.(`${d.id} / ${d.structure} zero-shot "${d.zero_shot_prompt}": Dice ${mean(zd).toFixed(3)}, ${rejected}/${test.length} rejected`);
  return { prompt: d.zero_shot_prompt, dice: mean(zd), ci: bootstrapCi(zd), rejected, cases: test.length };
}

/** One planned adaptation: an adapter fitted on the draw's support images (calibrated on val), scored on test. */
async function adaptationRun(model: SegmentationModel, suite: FewShotSuite, p: FewShotPlanEntry, cases: Map<string, LabelledImage>, val: LabelledImage[], test: LabelledImage[], progress?: (msg: string) => void): Promise<Run> {
  const adaptation = { ...(suite.adaptation.grid ? { grid: suite.adaptation.grid } : {}), ...(suite.adaptation.hidden ? { train: { hidden: suite.adaptation.hidden } } : {}) };
  const outcome = await adaptHead(model, p.support.map((c) => cases.get(c)!), val, { seed: p.draw + 1, ...adaptation });
  const td = await testDice(model, outcome, test);
  progress?.(`${p.dataset} / ${p.structure} k=${p.k} draw ${p.draw}: test Dice ${mean(td).toFixed(3)} (${outcome.seconds.toFixed(1)} s)`);
  return { dataset: p.dataset, structure: p.structure, k: p.k, draw: p.draw, support: p.support, seconds: outcome.seconds, validation_dice: outcome.validation?.dice_mean ?? null, test_dice: td, test_dice_mean: mean(td) };
}

/** The task-specific U-Nets' runs (fewshot_unet.py's results file), when the suite names one that exists. */
function baselineRuns(suite: FewShotSuite, suiteDir: string): BaselineRun[] {
  const baselineFile = suite.baseline_results ? path.resolve(suiteDir, suite.baseline_results) : undefined;
  return baselineFile && existsSync(baselineFile) ? (JSON.parse(readFileSync(baselineFile, 'utf8')) as { runs: BaselineRun[] }).runs : [];
}

/** Per entry: zero-shot, the adapters summarised per k, and the U-Nets per k (every test case of every draw pooled). */
function fewShotTable(suite: FewShotSuite, runs: Run[], zero: Record<string, ZeroShot>, baseline: BaselineRun[]): Table {
  return suite.datasets.map((d) => ({
    dataset: d.id,
    structure: d.structure,
    role: d.role,
    zero_shot: zero[entryKey(d.id, d.structure)],
    few_shot: suite.ks
      .map((k) => runs.filter((r) => entryKey(r.dataset, r.structure) === entryKey(d.id, d.structure) && r.k === k))
      .filter((rs) => rs.length)
      .map((rs) => ({ ...summariseK(rs), seconds: mean(rs.map((r) => r.seconds)) })),
    task_specific: suite.ks
      .map((k) => baseline.filter((r) => entryKey(r.dataset, r.structure ?? d.structure) === entryKey(d.id, d.structure) && r.k === k))
      .filter((rs) => rs.length)
      .map((rs) => {
        const all = rs.flatMap((r) => r.test_dice);
        return { k: rs[0].k, draws: rs.length, dice: mean(all), ci: bootstrapCi(all) };
      }),
  }));
}

/** Each bar of the suite against the table: met, not met, or not run (no adapter at its k). */
function barsOf(suite: FewShotSuite, table: Table): Bar[] {
  return suite.bars.map((b) => {
    const row = table.find((t) => t.dataset === b.dataset && (b.structure === undefined || t.structure === b.structure));
    if (!row) throw new Error(`a bar names ${b.dataset}${b.structure ? ` / ${b.structure}` : ''}, which is not an entry of the suite`);
    const fs = row.few_shot.find((x) => x.k === b.k);
    const ts = row.task_specific.find((x) => x.k === b.k);
    const met = !!fs && (b.min_dice === undefined || fs.dice >= b.min_dice) && (b.vs_baseline === undefined || (!!ts && (b.vs_baseline === 'at_least' ? fs.dice >= ts.dice : fs.dice >= ts.dice - 0.05)));
    return { ...b, few_shot: fs?.dice ?? null, task_specific: ts?.dice ?? null, met: fs ? met : null };
  });
}

type Table = { dataset: string; structure: string; role: string; zero_shot: ZeroShot; few_shot: { k: number | 'all'; draws: number; dice: number; ci: [number, number]; seconds: number }[]; task_specific: { k: number | 'all'; draws: number; dice: number; ci: [number, number] }[] }[];

const f3 = (v: number) => v.toFixed(3);

function fewShotMarkdown(suite: FewShotSuite, table: Table, bars: Bar[]): string {
  const lines = [`# ${suite.name}`, '', suite.description, '', 'Test Dice on present cases, mean over every test case of every draw, with its 95% bootstrap interval; seconds per adaptation as this run measured them (on a machine that may have been running other work: `npm run bench:adapt` times adaptation alone).', ''];
  lines.push('| dataset / structure | method | k | draws | Dice | 95% CI | seconds |', '|---|---|---|---|---|---|---|');
  for (const t of table) {
    const z = t.zero_shot;
    lines.push(`| ${t.dataset} / ${t.structure} (${t.role}) | zero-shot "${z.prompt}" (${z.rejected}/${z.cases} rejected) | 0 | 1 | ${f3(z.dice)} | ${f3(z.ci[0])}–${f3(z.ci[1])} | |`);
    for (const r of t.few_shot) lines.push(`| | adapter | ${r.k} | ${r.draws} | ${f3(r.dice)} | ${f3(r.ci[0])}–${f3(r.ci[1])} | ${r.seconds.toFixed(1)} |`);
    for (const r of t.task_specific) lines.push(`| | task-specific U-Net | ${r.k} | ${r.draws} | ${f3(r.dice)} | ${f3(r.ci[0])}–${f3(r.ci[1])} | |`);
  }
  if (bars.length) {
    lines.push('', '| bar | adapter | U-Net | met |', '|---|---|---|---|');
    for (const b of bars) lines.push(`| ${b.dataset}${b.structure ? ` / ${b.structure}` : ''} k=${b.k}${b.min_dice !== undefined ? ` Dice >= ${b.min_dice}` : ''}${b.vs_baseline === 'at_least' ? ' and at least the U-Net' : b.vs_baseline === 'within_5_points' ? ' and within 5 points of the U-Net' : ''} | ${b.few_shot === null ? '-' : f3(b.few_shot)} | ${b.task_specific === null ? '-' : f3(b.task_specific)} | ${b.met === null ? 'not run' : b.met ? 'yes' : 'no'} |`);
  }
  return lines.join('\n') + '\n';
}

/** One SVG: Dice against k (log scale) per dataset, adapters solid, U-Nets dashed, zero-shot as a dot at k = 0. */
function diceVersusK(table: Table): string {
  const W = 560, H = 320, L = 50, B = 40, colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const kOf = (k: number | 'all', t: Table[number]) => (k === 'all' ? Math.max(40, ...t.few_shot.map((r) => (r.k === 'all' ? 0 : r.k))) * 1.5 : k);
  const x = (k: number) => L + ((Math.log2(k) + 1) / 7) * (W - L - 10);
  const y = (d: number) => H - B - d * (H - B - 10);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-size="11">`, `<line x1="${L}" y1="${H - B}" x2="${W}" y2="${H - B}" stroke="#000"/><line x1="${L}" y1="0" x2="${L}" y2="${H - B}" stroke="#000"/>`];
  for (const d of [0, 0.25, 0.5, 0.75, 1]) parts.push(`<text x="${L - 30}" y="${y(d) + 4}">${d.toFixed(2)}</text>`);
  for (const k of [1, 5, 10, 20]) parts.push(`<text x="${x(k) - 4}" y="${H - B + 15}">${k}</text>`);
  parts.push(`<text x="${x(0.5) - 4}" y="${H - B + 15}">0</text><text x="${W / 2}" y="${H - 5}">k (support images), log scale; "all" at the right</text>`);
  table.forEach((t, i) => {
    const c = colours[i % colours.length];
    const line = (pts: [number, number][], dash: string) => {
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" ${dash} points="${pts.map(([k, d]) => `${x(k).toFixed(1)},${y(d).toFixed(1)}`).join(' ')}"/>`);
      // every measured point marked (a single one is otherwise invisible): filled for adapters, open for U-Nets
      for (const [k, d] of pts) parts.push(`<circle cx="${x(k).toFixed(1)}" cy="${y(d).toFixed(1)}" r="3" fill="${dash ? 'white' : c}" stroke="${c}"/>`);
    };
    line(t.few_shot.map((r) => [kOf(r.k, t), r.dice]), '');
    if (t.task_specific.length) line(t.task_specific.map((r) => [kOf(r.k, t), r.dice]), 'stroke-dasharray="5,4"');
    parts.push(`<rect x="${x(0.5) - 4 + 3 * i}" y="${y(t.zero_shot.dice) - 4}" width="8" height="8" fill="${c}"/><text x="${L + 8}" y="${H - B - 50 + 14 * i}" fill="${c}">${t.dataset}: adapter solid, U-Net dashed, zero-shot square at k = 0</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

