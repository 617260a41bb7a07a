import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { AppError } from '../core/errors.js';
import type { ServiceContext } from './context.js';
import { baseName, segmentFile, type FileRequest } from './segment-file.js';

/**
 * Batch jobs on a real queue (BullMQ on Redis): a batch is one job per input file; any number of
 * workers on any number of machines (`promptseg worker`) take them. Bad input fails at once with
 * its reason recorded; anything else (an overloaded or stopped worker, Redis gone a moment) is
 * retried with exponential backoff. A worker killed mid-job leaves its job to be taken again when
 * its lock runs out. Every output is written to a temporary name and renamed, so each exists once,
 * whole, whichever worker wrote it and however often; the last job done writes summary.json.
 *
 * Keys are namespaced and versioned (`promptseg:v1:`), so a rolling upgrade never reads old
 * entries wrong: the queue under `promptseg:v1:bull`, each batch's record in
 * `promptseg:v1:batch:<id>` (its spec), `...:done` and `...:failed` (hashes by input index).
 */
export const KEY_PREFIX = 'promptseg:v1';
const QUEUE = 'batch';
const BULL_PREFIX = `${KEY_PREFIX}:bull`;
/** Errors that are the input's: retrying cannot help. */
const PERMANENT = new Set(['bad_input', 'invalid_argument', 'unsupported_format', 'too_large', 'unknown_model', 'unknown_structure']);

export interface BatchSpec extends FileRequest {
  id: string;
  inputs: string[];
  out: string;
  created: string;
}

export interface BatchStatus {
  id: string;
  total: number;
  done: number;
  failed: number;
  pending: number;
  out: string;
  created: string;
  failures: { index: number; file: string; reason: string; kind: string }[];
  /** Set once every input is done or failed: where summary.json is. */
  summary?: string;
}

interface JobData {
  batch: string;
  index: number;
}

const key = (id: string, part?: string) => `${KEY_PREFIX}:batch:${id}${part ? `:${part}` : ''}`;

/** A Redis client: as workers want it (commands wait through reconnects), or `failFast` (a status read answers an error within seconds). */
export function redisClient(url: string, o: { failFast?: boolean } = {}): Redis {
  return new Redis(url, o.failFast ? { maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 3000 } : { maxRetriesPerRequest: null });
}

/** Records a batch and enqueues one job per input. Input file names must be distinct (outputs are named by them). */
export async function submitBatch(url: string, spec: Omit<BatchSpec, 'id' | 'created'>, o: { attempts?: number } = {}): Promise<BatchSpec> {
  const seen = new Map<string, string>();
  for (const f of spec.inputs) {
    const b = baseName(f);
    if (seen.has(b)) throw new Error(`two inputs are named ${b} (${seen.get(b)} and ${f}); outputs are named by the input, so give distinct names`);
    seen.set(b, f);
  }
  const full: BatchSpec = { ...spec, inputs: spec.inputs.map((f) => (f.startsWith('dicomweb:') ? f : path.resolve(f))), out: path.resolve(spec.out), id: randomUUID(), created: new Date().toISOString() };
  const redis = redisClient(url);
  const queue = new Queue<JobData>(QUEUE, { connection: { url, maxRetriesPerRequest: null }, prefix: BULL_PREFIX });
  try {
    await redis.set(key(full.id), JSON.stringify(full));
    await queue.addBulk(full.inputs.map((_, index) => ({
      name: 'segment',
      data: { batch: full.id, index },
      opts: { jobId: `${full.id}_${index}`, attempts: o.attempts ?? 4, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: 1000, removeOnFail: 5000 },
    })));
    return full;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/** Progress of a batch from its record; undefined when there is no such batch. */
export async function batchStatus(redis: Redis, id: string): Promise<BatchStatus | undefined> {
  const raw = await redis.get(key(id));
  if (!raw) return undefined;
  const spec = JSON.parse(raw) as BatchSpec;
  const done = await redis.hlen(key(id, 'done'));
  const failedRaw = await redis.hgetall(key(id, 'failed'));
  const failures = Object.entries(failedRaw).map(([i, v]) => ({ index: Number(i), ...(JSON.parse(v) as { file: string; reason: string; kind: string }) })).sort((a, b) => a.index - b.index);
  const total = spec.inputs.length;
  const finished = done + failures.length >= total;
  return { id, total, done, failed: failures.length, pending: Math.max(0, total - done - failures.length), out: spec.out, created: spec.created, failures, ...(finished ? { summary: path.join(spec.out, 'summary.json') } : {}) };
}

/**
 * Writes bytes to a file of the batch's folder whole or not at all: first under .partial/ in that
 * folder (a worker killed while writing leaves its piece there, never under the output's name),
 * then renamed into place. The batch's last job removes .partial/, then writes summary.json.
 */
async function writeWhole(out: string, name: string, bytes: Uint8Array | string): Promise<void> {
  const partial = path.join(out, PARTIAL);
  await mkdir(partial, { recursive: true });
  const tmp = path.join(partial, `${name}.${process.pid}-${randomUUID().slice(0, 8)}`);
  await writeFile(tmp, bytes);
  await rename(tmp, path.join(out, name));
}

const PARTIAL = '.partial';

/**
 * Takes batch jobs until closed. `ctx` segments (its inference queue and model); `concurrency`
 * jobs run at once; `lockMs` is how long a job stays a dead worker's before another takes it.
 */
export function startBatchWorker(ctx: ServiceContext, url: string, o: { concurrency?: number; lockMs?: number; onJob?: (status: 'done' | 'failed' | 'retry', batch: string, index: number) => void } = {}): { close: () => Promise<void> } {
  const redis = redisClient(url);
  const specs = new Map<string, BatchSpec>();
  const specOf = async (id: string) => {
    let s = specs.get(id);
    if (!s) {
      const raw = await redis.get(key(id));
      if (!raw) throw new UnrecoverableError(`batch ${id} has no record in Redis`);
      specs.set(id, (s = JSON.parse(raw) as BatchSpec));
    }
    return s;
  };
  const recordFailure = async (spec: BatchSpec, index: number, error: Pick<AppError, 'kind' | 'message'>) => {
    await redis.hset(key(spec.id, 'failed'), String(index), JSON.stringify({ file: spec.inputs[index], reason: error.message, kind: error.kind }));
    await finishIfLast(spec);
  };
  const finishIfLast = async (spec: BatchSpec) => {
    const [done, failed] = await Promise.all([redis.hgetall(key(spec.id, 'done')), redis.hgetall(key(spec.id, 'failed'))]);
    if (Object.keys(done).length + Object.keys(failed).length < spec.inputs.length) return;
    // every worker that sees the batch complete writes the same summary: its content depends only on the record
    const entries = spec.inputs.map((file, i) => (done[i] ? JSON.parse(done[i]) : { file, error: JSON.parse(failed[i] ?? '{}') }));
    // .partial/ goes first (every output is in place), so that summary.json marks a finished folder
    await rm(path.join(spec.out, PARTIAL), { recursive: true, force: true });
    const tmp = path.join(spec.out, `.summary.json.${process.pid}-${randomUUID().slice(0, 8)}`);
    await writeFile(tmp, JSON.stringify({ batch: spec.id, total: spec.inputs.length, done: Object.keys(done).length, failed: Object.keys(failed).length, results: entries }, null, 2));
    await rename(tmp, path.join(spec.out, 'summary.json'));
  };
  const worker = new Worker<JobData>(
    QUEUE,
    async (job: Job<JobData>) => {
      const spec = await specOf(job.data.batch);
      const { index } = job.data;
      const file = spec.inputs[index];
      if (await redis.hexists(key(spec.id, 'done'), String(index))) return 'already done';
      const r = await segmentFile(ctx, file, spec);
      if (!r.ok) {
        const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        if (PERMANENT.has(r.error.kind) || last) {
          await recordFailure(spec, index, r.error);
          o.onJob?.('failed', spec.id, index);
          throw new UnrecoverableError(r.error.message);
        }
        o.onJob?.('retry', spec.id, index);
        throw new Error(`${r.error.kind}: ${r.error.message}`); // retried with backoff
      }
      for (const m of r.masks) await writeWhole(spec.out, m.name, m.bytes);
      await redis.hset(key(spec.id, 'done'), String(index), JSON.stringify({ ...r.summary, worker: `${hostname()}:${process.pid}` }));
      o.onJob?.('done', spec.id, index);
      await finishIfLast(spec);
      return 'done';
    },
    { connection: { url, maxRetriesPerRequest: null }, prefix: BULL_PREFIX, concurrency: o.concurrency ?? 1, lockDuration: o.lockMs ?? 30_000, stalledInterval: Math.max(500, Math.round((o.lockMs ?? 30_000) / 2)), maxStalledCount: 5 },
  );
  worker.on('error', () => undefined); // connection errors: ioredis reconnects and the worker carries on
  return {
    close: async () => {
      await worker.close();
      redis.disconnect();
    },
  };
}
