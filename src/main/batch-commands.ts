import { parseArgs } from 'node:util';
import type { loadConfig } from '../config/env.js';
import { batchStatus, redisClient, startBatchWorker, submitBatch } from '../service/batch.js';
import { createServiceContext, disposeServiceContext } from '../service/context.js';
import { expandInputs, UsageError } from './input-files.js';
import { findSeries } from '../service/dicomweb.js';
import { seriesInput } from '../service/segment-file.js';

type Config = ReturnType<typeof loadConfig>;

function redisUrl(config: Config): string {
  if (!config.PROMPTSEG_REDIS_URL) throw new UsageError('batches run on Redis: set PROMPTSEG_REDIS_URL (e.g. redis://127.0.0.1:6379) for the submitter and every worker');
  return config.PROMPTSEG_REDIS_URL;
}

/** promptseg batch submit | status */
export async function batchCommand(config: Config, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'status') {
    if (rest.length !== 1) throw new UsageError('usage: promptseg batch status <id>');
    const redis = redisClient(redisUrl(config));
    try {
      const s = await batchStatus(redis, rest[0]);
      if (!s) throw new UsageError(`no batch ${rest[0]} in ${config.PROMPTSEG_REDIS_URL}`);
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      return 0;
    } finally {
      redis.disconnect();
    }
  }
  if (sub !== 'submit') throw new UsageError('usage: promptseg batch submit <image|folder|list.txt>... --prompt <text> --out DIR | promptseg batch status <id>');
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { prompt: { type: 'string', multiple: true, short: 'p' }, out: { type: 'string', short: 'o' }, model: { type: 'string' }, threshold: { type: 'string' }, 'pacs-study': { type: 'string' }, 'pacs-modality': { type: 'string' }, 'pacs-limit': { type: 'string' }, 'store-seg': { type: 'boolean' } },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  const pacs = values['pacs-study'] !== undefined || values['pacs-modality'] !== undefined;
  if (!positionals.length && !pacs) throw new UsageError('give at least one image, folder or list file (.txt, one path per line), or a PACS query (--pacs-study UID, --pacs-modality CT)');
  if (!values.prompt?.length) throw new UsageError('give at least one --prompt');
  if (!values.out) throw new UsageError('give --out: the folder (shared by the workers) the masks and summary.json go to');
  const threshold = values.threshold === undefined ? undefined : Number(values.threshold);
  if (threshold !== undefined && !(threshold > 0 && threshold < 1)) throw new UsageError('--threshold is a probability between 0 and 1');
  const inputs = await expandInputs(positionals, { lists: true });
  if (pacs) {
    // one job per series the PACS query finds (QIDO-RS); each is read by the worker (WADO-RS)
    if (!config.PROMPTSEG_DICOMWEB_URL) throw new UsageError('a PACS query needs PROMPTSEG_DICOMWEB_URL (here and for every worker)');
    const limit = values['pacs-limit'] === undefined ? 100 : Number(values['pacs-limit']);
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= 1000)) throw new UsageError('--pacs-limit is a whole number from 1 to 1000');
    const found = await findSeries(config, { study_uid: values['pacs-study'], modality: values['pacs-modality'], limit });
    inputs.push(...found.map((s) => seriesInput(s.study_uid, s.series_uid)));
  }
  if (!inputs.length) throw new UsageError(pacs ? 'the PACS query found no series' : 'no images found (dcm, png, jpg, webp, tif, nii)');
  let spec;
  try {
    spec = await submitBatch(redisUrl(config), { inputs, prompts: values.prompt, out: values.out, model: values.model, threshold, storeSeg: values['store-seg'] });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  process.stdout.write(`${spec.id}\n`);
  process.stderr.write(`promptseg: queued ${inputs.length} image(s) as batch ${spec.id}; outputs to ${spec.out}; follow it with: promptseg batch status ${spec.id}\n`);
  return 0;
}

/** promptseg worker [--concurrency N]: takes batch jobs until stopped (SIGTERM, SIGINT: the jobs in hand finish first). */
export async function workerCommand(config: Config, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { concurrency: { type: 'string', short: 'c' } } });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const concurrency = Number(parsed.values.concurrency ?? 1);
  if (!(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 64)) throw new UsageError('--concurrency is a whole number from 1 to 64');
  const url = redisUrl(config);
  // the worker's own inference queue takes as many at once as it runs jobs; each image is seen once,
  // so its features are not kept for another prompt, and a result only until its masks are written
  const ctx = createServiceContext({ ...config, PROMPTSEG_CONCURRENCY: Math.max(config.PROMPTSEG_CONCURRENCY, concurrency), PROMPTSEG_CACHE_IMAGES: 1, PROMPTSEG_RESULTS_KEPT: 2 * concurrency + 2, PROMPTSEG_REDIS_URL: undefined }); // its results are for its own outputs, not shared
  await ctx.pipeline.registry.get().load();
  const worker = startBatchWorker(ctx, url, { concurrency, lockMs: config.PROMPTSEG_BATCH_LOCK_MS });
  process.stderr.write(`promptseg worker: taking batch jobs from ${url.replace(/\/\/[^@]*@/, '//')} (${concurrency} at a time)\n`);
  return new Promise<number>((resolve) => {
    const stop = () => {
      worker.close().then(() => disposeServiceContext(ctx)).then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
