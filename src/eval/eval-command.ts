import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../config/env.js';
import type { ServiceContext } from '../service/context.js';
import { renderHtml, renderMarkdown, type ReportMeta } from './report.js';
import { evalKey, machineDescription, runEval, summarise, type CaseRecord, type Summary } from './run-eval.js';
import { caseImagePath, readCaseMask } from './dataset-layout.js';
import { decodeImage } from '../core/image/decode.js';
import { renderOverlay } from '../core/image/overlay.js';
import { segment } from '../core/pipeline/segment.js';
import { loadSuite } from './suite.js';

export interface EvalOptions {
  suiteFile: string;
  outDir: string;
  split?: string;
  limit?: number;
  models?: string[];
  /** Override the suite's test-time augmentation. */
  tta?: number;
  ttaImage?: number | 'auto';
  progress?: (done: number, total: number, label: string) => void;
  reuse?: boolean;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

/** Runs a suite and writes results.json, report.md and report.html; reuses a finished run with the same key. */
export async function evaluateSuite(ctx: ServiceContext, o: EvalOptions): Promise<{ summary: Summary; reused: boolean; files: string[] }> {
  const { suite, dataRoot } = loadSuite(o.suiteFile);
  if (o.models?.length) suite.models = o.models;
  if (o.tta !== undefined) suite.tta = o.tta;
  if (o.ttaImage !== undefined) suite.tta_image = o.ttaImage;
  if (!existsSync(path.join(dataRoot, 'index.json'))) throw new Error(`the suite's data_root ${dataRoot} has no index.json`);
  const split = o.split ?? suite.split;
  const key = evalKey(ctx, suite, split, o.limit);
  mkdirSync(o.outDir, { recursive: true });
  const resultsFile = path.join(o.outDir, 'results.json');
  const files = [resultsFile, path.join(o.outDir, 'report.md'), path.join(o.outDir, 'report.html')];
  if (o.reuse !== false && existsSync(resultsFile)) {
    const prev = JSON.parse(readFileSync(resultsFile, 'utf8')) as { key?: string; summary: Summary };
    if (prev.key === key) return { summary: prev.summary, reused: true, files };
  }
  const started = new Date();
  const t0 = performance.now();
  const { records, calibrationPixels, probes } = await runEval(ctx, suite, dataRoot, { split, limit: o.limit, progress: o.progress });
  const summary = summarise(records, calibrationPixels, suite, probes);
  const meta: ReportMeta = {
    suite: suite.name,
    split,
    models: suite.models.map((m) => ({ id: m, files: ctx.pipeline.registry.entry(m).files })),
    commit: gitCommit(),
    machine: machineDescription(),
    started: started.toISOString(),
    seconds: (performance.now() - t0) / 1000,
    limit: o.limit ?? suite.limit_per_dataset,
  };
  const md = renderMarkdown(summary, meta);
  const gallery = await worstCaseGallery(ctx, dataRoot, records, suite.threshold);
  writeFileSync(resultsFile, JSON.stringify({ key, meta, suite, summary, records }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)));
  writeFileSync(files[1], md);
  writeFileSync(files[2], renderHtml(summary, records, meta, md, gallery));
  return { summary, reused: false, files };
}

/**
 * Thumbnails of the 12 worst canonical results: the image with the ground truth (red) and the
 * prediction (blue) drawn over it. Results are deterministic, so the cases are segmented again.
 */
async function worstCaseGallery(ctx: ServiceContext, dataRoot: string, records: CaseRecord[], threshold: number | undefined): Promise<Map<CaseRecord, string>> {
  const out = new Map<CaseRecord, string>();
  const worst = records.filter((r) => r.set === 'canonical' && r.dice !== null).sort((a, b) => a.dice! - b.dice!).slice(0, 12);
  for (const r of worst) {
    const image = await decodeImage(readFileSync(caseImagePath(dataRoot, r.dataset, r.case)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
    const res = await segment(ctx.pipeline, { image, prompts: [r.prompt], modelId: r.model, threshold });
    const gt = await readCaseMask(dataRoot, r.dataset, r.structure!, r.case);
    const png = await renderOverlay(image, [gt, res.results[0].mask], 200);
    out.set(r, `data:image/png;base64,${png.toString('base64')}`);
  }
  return out;
}
