#!/usr/bin/env node
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/env.js';
import { createServiceContext, disposeServiceContext } from '../service/context.js';
import { operationByName } from '../service/operation-table.js';
import { runOperation } from '../service/run-operation.js';
import { segmentFile } from '../service/segment-file.js';
import { expandInputs, UsageError } from './input-files.js';
import { batchCommand, workerCommand } from './batch-commands.js';
import { startServer } from './serve.js';
import { relaunchWithServerMemorySettings } from './relaunch.js';
import { runMcpStdio } from '../mcp/stdio.js';
import { evaluateSuite } from '../eval/eval-command.js';
import { evaluateFewShot } from '../eval/few-shot-suite.js';
import { evaluateGenericWords } from '../eval/generic-words-suite.js';
import { evaluateTaskSpecific } from '../eval/task-specific-suite.js';
import { IMAGE_TRANSFORMS } from '../core/pipeline/image-tta.js';
import { fitCalibration, writeCalibration } from '../eval/calibrate.js';
import { PROJECT_ROOT } from '../config/env.js';
import { ModelRegistry } from '../core/models/registry.js';
import { DEFAULT_HUB_ENDPOINT, pullBundle } from '../core/models/hub-pull.js';
import { bundleGraphInputs, formatGraphInput } from '../core/models/graph-inputs.js';
import { AppFailure } from '../core/errors.js';

const USAGE = `promptseg: text-prompted medical image segmentation

usage:
  promptseg serve                          start the HTTP API, web page and MCP endpoint (HOST, PORT)
  promptseg mcp                            run the MCP server on stdio
  promptseg segment <image|folder>... --prompt <text> [--prompt <text>...] [--out DIR]
                    [--model ID] [--threshold P] [--generic-words resolve|literal]
                                           write mask PNGs and summary.json per image
  promptseg eval <suite.json> [--split test] [--limit N] [--out DIR] [--model ID...] [--tta N] [--tta-image N|auto]
                                           evaluate models on labelled data (eval/README.md)
  promptseg calibrate [--model ID] [--data DIR] [--limit N]
                                           fit calibration, OOD statistics, verdict and conformal
                                           thresholds on the val split (every case; --limit N: at
                                           most N per dataset) of the datasets whose structures the
                                           vocabulary knows (the others are skipped and listed);
                                           writes models/<id>/calibration.json
  promptseg models list                    list models (installed, size, licence)
  promptseg models pull <id> [<id> ...]   download model bundles from the hub (HF_ENDPOINT for a mirror),
                                           resumable, sha256-verified against the manifest
  promptseg structures list [--modality M] list structures the models know
  promptseg adapt <folder> --structure <slug> [--name "<name>"] [--synonym "<s>"]... [--shots K] [--seed S] [--model ID]
                                           teach the model a structure from labelled images (a folder
                                           like ../shared/data/medseg2d/<dataset>); writes an adapter
                                           to PROMPTSEG_ADAPTERS_DIR (default adapters/), served from then on
  promptseg adapters list                  list adapters, and adapter files that are not served (why)
  promptseg adapters remove <id>           delete an adapter
  promptseg batch submit <image|folder|list.txt>... --prompt <text> [--prompt <text>...] --out DIR [--model ID] [--threshold P]
                    [--pacs-study UID] [--pacs-modality CT] [--pacs-limit N] [--store-seg]
                                           queue one job per image (or per PACS series found) on Redis
                                           (PROMPTSEG_REDIS_URL); prints the batch id
  promptseg batch status <id>              progress, failures with reasons, the summary once complete
  promptseg worker [--concurrency N]       run queued batch jobs (as many workers on as many machines as wanted)
`;


async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  const config = loadConfig();
  switch (cmd) {
    case 'serve': {
      const relaunched = relaunchWithServerMemorySettings();
      if (relaunched) return relaunched;
      const s = await startServer(config);
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        process.stderr.write('promptseg: shutting down, finishing in-flight requests\n');
        s.close().then(() => process.exit(0));
      };
      // `on`, not `once`: a terminal's Ctrl-C reaches a relaunched server twice (directly, and
      // forwarded by its launcher), and a second signal must not cut the drain short
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      return new Promise<number>(() => undefined);
    }
    case 'mcp':
      await runMcpStdio(config);
      return new Promise<number>(() => undefined);
    case 'segment':
      return segmentCommand(config, rest);
    case 'eval':
      return evalCommand(config, rest);
    case 'calibrate':
      return calibrateCommand(config, rest);
    case 'models':
      if (rest[0] === 'pull') return pullCommand(config, rest.slice(1));
      if (rest[0] !== 'list') throw new UsageError('usage: promptseg models list | promptseg models pull <id> [<id> ...]');
      return printOp(config, 'list_models', {});
    case 'adapt':
      return adaptCommand(config, rest);
    case 'batch':
      return batchCommand(config, rest);
    case 'worker': {
      // a long-running process too: the same memory settings as the server
      const relaunched = relaunchWithServerMemorySettings();
      if (relaunched) return relaunched;
      return workerCommand(config, rest);
    }
    case 'adapters': {
      if (rest[0] === 'list') return printOp(config, 'list_adapters', {});
      if (rest[0] === 'remove' && rest[1]) return printOp(config, 'delete_adapter', { id: rest[1] });
      throw new UsageError('usage: promptseg adapters list | promptseg adapters remove <id>');
    }
    case 'structures': {
      if (rest[0] !== 'list') throw new UsageError('usage: promptseg structures list [--modality M]');
      const { values } = parseArgs({ args: rest.slice(1), options: { modality: { type: 'string' } } });
      return printOp(config, 'list_structures', values.modality ? { modality: values.modality } : {});
    }
    default:
      throw new UsageError(`unknown command "${cmd}"\n\n${USAGE}`);
  }
}

async function printOp(config: ReturnType<typeof loadConfig>, name: string, input: unknown): Promise<number> {
  const ctx = createServiceContext(config);
  const r = await runOperation(ctx, operationByName(name)!, input, { via: 'cli' });
  await disposeServiceContext(ctx);
  if (!r.ok) {
    process.stderr.write(`promptseg: ${r.error.message}\n`);
    return 1;
  }
  process.stdout.write(JSON.stringify(r.value, null, 2) + '\n');
  return 0;
}

async function adaptCommand(config: ReturnType<typeof loadConfig>, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { structure: { type: 'string' }, name: { type: 'string' }, synonym: { type: 'string', multiple: true }, shots: { type: 'string' }, seed: { type: 'string' }, model: { type: 'string' } },
  });
  if (positionals.length !== 1 || !values.structure) throw new UsageError('usage: promptseg adapt <folder> --structure <slug> [--name "<name>"] [--synonym "<s>"]... [--shots K] [--seed S] [--model ID]');
  const int = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, not "${v}"`);
    return Number(v);
  };
  const ctx = createServiceContext(config);
  const t0 = Date.now();
  const r = await runOperation(
    ctx,
    operationByName('adapt_structure')!,
    { folder: path.resolve(positionals[0]), structure: values.structure, name: values.name, synonyms: values.synonym, shots: int(values.shots, '--shots'), seed: int(values.seed, '--seed'), model: values.model, wait: true },
    { via: 'cli', progress: (d, t, label) => progressBar(d, t, t0, label ?? '') },
  );
  process.stderr.write('\n');
  await disposeServiceContext(ctx);
  if (!r.ok) {
    process.stderr.write(`promptseg: ${r.error.message}\n`);
    return 1;
  }
  const job = r.value as { status: string; error?: { message: string }; result?: { adapter?: Record<string, unknown> } };
  if (job.status !== 'succeeded') {
    process.stderr.write(`promptseg: ${job.error?.message ?? 'the adaptation failed'}\n`);
    return 1;
  }
  process.stdout.write(JSON.stringify(job.result?.adapter, null, 2) + '\n');
  return 0;
}

async function pullCommand(config: ReturnType<typeof loadConfig>, args: string[]): Promise<number> {
  if (args.length < 1) throw new UsageError('usage: promptseg models pull <id> [<id> ...]');
  const reg = new ModelRegistry(config.PROMPTSEG_MODELS_DIR, 1, config.PROMPTSEG_EXTRA_MANIFESTS);
  const entries = args.map((id) => {
    const e = reg.manifest.models.find((m) => m.id === id);
    if (!e) throw new UsageError(`no model "${id}"; known: ${reg.manifest.models.map((m) => m.id).join(', ')}`);
    return e;
  });
  const endpoint = process.env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT;
  let code = 0;
  for (const entry of entries) {
    if (entry.convert) {
      process.stderr.write(`promptseg: ${entry.id} is not on the hub as ONNX; make it with: ${entry.convert.command}\n`);
      code = 1;
      continue;
    }
    if (!entry.hub) {
      process.stderr.write(`promptseg: ${entry.id} ships with promptseg; there is nothing to pull\n`);
      continue;
    }
    const t0 = Date.now();
    try {
      const r = await pullBundle(
        { repo: entry.hub.repo, revision: entry.hub.revision, dest: reg.dirOf(entry), files: Object.entries(entry.files).map(([p, f]) => ({ path: p, sha256: f.sha256, bytes: f.bytes })) },
        { endpoint, progress: (file, done, total) => progressBar(done, total ?? done, t0, file) },
      );
      process.stderr.write(`\npromptseg: ${entry.id}: ${r.downloaded.length} file(s) downloaded and verified, ${r.kept.length} already present\n`);
      // what each graph declares, so a user can check the export against what the runner feeds it
      for (const [file, inputs] of Object.entries(await bundleGraphInputs(reg.dirOf(entry), entry))) {
        process.stderr.write(`promptseg: ${entry.id}: ${file} inputs: ${'error' in inputs ? `could not be read (${inputs.error})` : inputs.map(formatGraphInput).join('; ')}\n`);
      }
    } catch (e) {
      if (!(e instanceof AppFailure)) throw e;
      process.stderr.write(`\npromptseg: ${entry.id}: ${e.error.message}\n`);
      code = 1;
    }
  }
  return code;
}

async function calibrateCommand(config: ReturnType<typeof loadConfig>, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { model: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' } } });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  const dataRoot = v.data ?? path.resolve(PROJECT_ROOT, '..', 'shared', 'data', 'medseg2d');
  if (!existsSync(path.join(dataRoot, 'index.json'))) throw new UsageError(`no labelled data at ${dataRoot} (give --data DIR in the medseg2d layout)`);
  const limit = v.limit === undefined ? undefined : Number(v.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new UsageError('--limit is a positive whole number');
  const ctx = createServiceContext(config);
  // calibration makes several passes over the cases, each counting from 1: the ETA is per pass
  let passStart = Date.now(), last = 0;
  const progress = (d: number, t: number, label: string) => {
    if (d < last) passStart = Date.now();
    last = d;
    progressBar(d, t, passStart, label);
  };
  const cal = await fitCalibration(ctx, { modelId: v.model, dataRoot, limitPerDataset: limit, progress });
  process.stderr.write('\n');
  const file = writeCalibration(ctx, v.model, cal);
  await disposeServiceContext(ctx);
  process.stdout.write(JSON.stringify({ file, pixel_temperature: cal.pixel_temperature, presence: cal.presence, quality: cal.quality, thresholds: cal.thresholds, ood_threshold: cal.ood?.threshold ?? null, cases: cal.fitted_on.cases, datasets: cal.fitted_on.datasets, skipped_datasets: cal.fitted_on.skipped_datasets ?? [] }, null, 1) + '\n');
  return 0;
}

async function evalCommand(config: ReturnType<typeof loadConfig>, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { split: { type: 'string' }, limit: { type: 'string' }, out: { type: 'string' }, model: { type: 'string', multiple: true }, fresh: { type: 'boolean' }, tta: { type: 'string' }, 'tta-image': { type: 'string' } } });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('usage: promptseg eval <suite.json> [--split test] [--limit N] [--out DIR] [--model ID]');
  if (values.split && !['train', 'val', 'test'].includes(values.split)) throw new UsageError('--split is one of train, val, test');
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new UsageError('--limit is a positive whole number');
  const count = (v: string | undefined, name: string, max: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 0 && n <= max)) throw new UsageError(`--${name} is a whole number from 0 to ${max}${name === 'tta-image' ? ', or auto' : ''}`);
    return n;
  };
  const tta = count(values.tta, 'tta', 8), ttaImage = values['tta-image'] === 'auto' ? 'auto' : count(values['tta-image'], 'tta-image', IMAGE_TRANSFORMS.length);
  const suiteFile = positionals[0];
  if (!existsSync(suiteFile)) throw new UsageError(`no suite file ${suiteFile}`);
  const protocol = (JSON.parse(readFileSync(suiteFile, 'utf8')) as { protocol?: string }).protocol;
  if (protocol === 'few-shot' || protocol === 'generic-words' || protocol === 'task-specific') {
    // the few-shot protocol (adapters at several k against zero-shot and task-specific nets),
    // generic words against canonical names, and the generalist against each dataset's own net (eval/README.md)
    const ctx = createServiceContext(config);
    const run = protocol === 'few-shot' ? evaluateFewShot : protocol === 'generic-words' ? evaluateGenericWords : evaluateTaskSpecific;
    const { files } = await run(ctx, suiteFile, values.out ?? path.join('runs', path.basename(suiteFile, '.json')), (msg) => process.stderr.write(`${msg}\n`));
    await disposeServiceContext(ctx);
    process.stdout.write(readFileSync(files[1], 'utf8'));
    process.stderr.write(`promptseg: wrote ${files.join(', ')}\n`);
    return 0;
  }
  const outDir = values.out ?? path.join('runs', path.basename(suiteFile, '.json') + `-${values.split ?? 'suite'}${limit ? `-limit${limit}` : ''}${tta ? `-tta${tta}` : ''}${ttaImage !== undefined && ttaImage !== 'auto' ? `-ttaimg${ttaImage}` : ''}`);
  const ctx = createServiceContext(config);
  const t0 = Date.now();
  const { summary, reused, files } = await evaluateSuite(ctx, { suiteFile, outDir, split: values.split, limit, models: values.model, tta, ttaImage, reuse: !values.fresh, progress: (d, t, label) => progressBar(d, t, t0, label) });
  process.stderr.write('\n');
  await disposeServiceContext(ctx);
  if (reused) process.stderr.write(`promptseg: same models, suite and data as the run in ${outDir}; reused it (--fresh to rerun)\n`);
  process.stdout.write(readFileSync(files[1], 'utf8'));
  process.stderr.write(`promptseg: wrote ${files.join(', ')}\n`);
  return Object.keys(summary.presence).length ? 0 : 1;
}

async function segmentCommand(config: ReturnType<typeof loadConfig>, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { prompt: { type: 'string', multiple: true, short: 'p' }, out: { type: 'string', short: 'o' }, model: { type: 'string' }, threshold: { type: 'string' }, 'generic-words': { type: 'string' } },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (!positionals.length) throw new UsageError('give at least one image or folder');
  if (!values.prompt?.length) throw new UsageError('give at least one --prompt');
  const files = await expandInputs(positionals);
  if (!files.length) throw new UsageError('no images found (dcm, png, jpg, webp, tif)');
  const outDir = values.out ?? 'promptseg-out';
  await mkdir(outDir, { recursive: true });
  const ctx = createServiceContext(config);
  const summary: unknown[] = [];
  let failures = 0;
  const t0 = Date.now();
  const threshold = values.threshold ? Number(values.threshold) : undefined;
  for (const [i, f] of files.entries()) {
    const r = await segmentFile(ctx, f, { prompts: values.prompt, model: values.model, threshold, genericWords: values['generic-words'] });
    if (!r.ok) {
      failures++;
      summary.push({ file: f, error: r.error });
      process.stderr.write(`\npromptseg: ${f}: ${r.error.message}\n`);
    } else {
      for (const m of r.masks) await writeFile(path.join(outDir, m.name), m.bytes);
      summary.push(r.summary);
    }
    if (files.length > 1) progressBar(i + 1, files.length, t0);
  }
  if (files.length > 1) process.stderr.write('\n');
  await writeFile(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
  await disposeServiceContext(ctx);
  process.stderr.write(`promptseg: wrote ${files.length - failures} result(s) to ${outDir}${failures ? `, ${failures} failed` : ''}\n`);
  return failures === files.length ? 1 : 0;
}

function progressBar(done: number, total: number, t0: number, label = ''): void {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const el = (Date.now() - t0) / 1000;
  const eta = done ? (el / done) * (total - done) : 0;
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ETA ${eta.toFixed(0)}s ${label.padEnd(40).slice(0, 40)}`);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`promptseg: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`promptseg: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
