import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SharedStore } from './shared-store.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/env.js';
import { PROJECT_ROOT } from '../config/env.js';
import { ModelRegistry } from '../core/models/registry.js';
import { createPipelineContext, probabilityMap, type ModelSlot, type PipelineContext, type SegmentResult } from '../core/pipeline/segment.js';
import { Lru } from '../core/pipeline/lru.js';
import { yieldTurn } from '../core/pipeline/cancel.js';
import { toGreyLevels } from '../core/image/mask-encode.js';
import type { GridSource, RasterImage } from '../core/image/raster.js';
import type { DicomSource } from '../core/image/dicom.js';
import type { SegSeries } from '../core/image/dicom-seg.js';
import { Vocabulary } from '../core/vocabulary.js';
import { InferenceQueue } from './inference-queue.js';
import { AdapterSet } from '../core/adapters/adapter-set.js';
import { modelFilesFingerprint } from '../core/trust/calibration.js';
import { MemoryJobStore, SharedJobStore, type JobStore } from './jobs.js';

/** A volume result kept for downloads: one NIfTI mask per prompt, and for a DICOM series what its SEG needs. */
export interface StoredVolume {
  id: string;
  createdAt: number;
  files: Buffer[];
  /** Per segmented slice (in order), a PNG of the slice with the masks over it, when asked for. */
  previews?: { slice: number; png: Buffer }[];
  seg?: { series: SegSeries; segments: { label: string; slug?: string; description?: string; slices: Uint8Array[] }[] };
}

/**
 * A result kept for downloads. A prompt's probability map is kept as what makes it: the model's
 * grid and where it sits (when the mask's logits were interpolated from it and nothing else:
 * the map is drawn when fetched, off the request path), or else as the 8-bit image it is served as
 * (a quarter of float32). The pixel uncertainty map where paraphrase TTA measured one is kept 8-bit.
 * The result's own full-resolution float maps are dropped.
 */
export interface StoredResult {
  id: string;
  createdAt: number;
  result: SegmentResult;
  maps: { probability?: Uint8Array; source?: { grid: GridSource; temperature: number }; ttaSpread?: Uint8Array }[];
  /** The source DICOM's identity and geometry, when the image came from DICOM (for DICOM SEG). */
  dicom?: DicomSource;
  spacing?: { row: number; col: number };
  /** Set when the result was made on a working copy: the size its masks and maps are served at. */
  original?: { width: number; height: number };
}

/** Everything the operations share: config, models, caches, the inference queue, stored results. */
export interface ServiceContext {
  config: Config;
  pipeline: PipelineContext;
  queue: InferenceQueue;
  /** Decoding runs here, as many at once as inference, so that concurrent uploads cannot each hold a decoded image. */
  decodeQueue: InferenceQueue;
  /** Requests with a large body (uploads), from reading the body to the answer: a few at a time. */
  uploadQueue: InferenceQueue;
  /** Decoded images by id (their sha256), so a caller can prompt an image again without resending it. */
  images: Lru<string, RasterImage>;
  /** Recent volume results by id: one NIfTI mask (.nii.gz bytes) per prompt. */
  volumes: Lru<string, StoredVolume>;
  /** Recent segmentation results by id, for mask and report downloads. */
  results: Lru<string, StoredResult>;
  startedAt: number;
  version: string;
  counters: Map<string, number>;
  draining: boolean;
  /** The secret that keys image ids (PROMPTSEG_ID_KEY, or random per process). */
  idKey: Buffer;
  /** Keep stored results' float maps too (the evaluation samples them); servers keep 8-bit maps only. */
  keepFloatMaps: boolean;
  /** The Redis client of batch status reads (PROMPTSEG_REDIS_URL), made on first use. */
  redis?: Redis;
  /** State shared with other replicas (results, volumes, image_ids) when PROMPTSEG_REDIS_URL is set. */
  shared?: SharedStore;
  /** Background jobs (adaptations) and the queue they run on, one at a time. */
  jobs: JobStore;
  jobQueue: InferenceQueue;
}

export function createServiceContext(config: Config): ServiceContext {
  const registry = new ModelRegistry(config.PROMPTSEG_MODELS_DIR, config.PROMPTSEG_THREADS, config.PROMPTSEG_EXTRA_MANIFESTS);
  const vocabulary = Vocabulary.fromProject(PROJECT_ROOT);
  const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  const pipeline = createPipelineContext(registry, vocabulary, config.PROMPTSEG_CACHE_IMAGES);
  pipeline.adapters = new AdapterSet(config.PROMPTSEG_ADAPTERS_DIR, vocabulary, (id) => {
    const e = registry.entries().find((x) => x.id === id);
    return e && modelFilesFingerprint(e.files);
  });
  const shared = config.PROMPTSEG_REDIS_URL ? SharedStore.open(config.PROMPTSEG_REDIS_URL, config.PROMPTSEG_SHARED_TTL_S) : undefined;
  return {
    config,
    pipeline,
    jobs: shared ? new SharedJobStore(shared) : new MemoryJobStore(),
    jobQueue: new InferenceQueue(1, 8),
    queue: new InferenceQueue(config.PROMPTSEG_CONCURRENCY, config.PROMPTSEG_QUEUE_SIZE),
    decodeQueue: new InferenceQueue(config.PROMPTSEG_CONCURRENCY, config.PROMPTSEG_QUEUE_SIZE),
    uploadQueue: new InferenceQueue(config.PROMPTSEG_CONCURRENCY + 1, config.PROMPTSEG_QUEUE_SIZE),
    images: new Lru(Math.max(4, config.PROMPTSEG_CACHE_IMAGES), { maxBytes: config.PROMPTSEG_IMAGE_CACHE_BYTES, sizeOf: (img) => img.data.byteLength }),
    results: new Lru(config.PROMPTSEG_RESULTS_KEPT, { maxBytes: config.PROMPTSEG_RESULTS_BYTES, sizeOf: storedResultBytes }),
    volumes: new Lru(Math.max(2, Math.ceil(config.PROMPTSEG_RESULTS_KEPT / 8)), {
      maxBytes: config.PROMPTSEG_RESULTS_BYTES,
      sizeOf: (v) => v.files.reduce((n, f) => n + f.byteLength, 0) + (v.previews?.reduce((n, p) => n + p.png.byteLength, 0) ?? 0) + (v.seg?.segments.reduce((n, s) => n + s.slices.reduce((m, x) => m + x.byteLength, 0), 0) ?? 0),
    }),
    startedAt: Date.now(),
    version: pkg.version,
    counters: new Map(),
    draining: false,
    keepFloatMaps: false,
    ...(shared ? { shared } : {}),
    idKey: config.PROMPTSEG_ID_KEY ? Buffer.from(config.PROMPTSEG_ID_KEY, 'utf8') : randomBytes(32),
  };
}

/** Bytes a stored result holds: its masks and 8-bit maps. */
function storedResultBytes(s: StoredResult): number {
  let n = 0;
  for (const r of s.result.results) n += r.mask.byteLength + r.logits.data.byteLength + (r.ttaStd?.byteLength ?? 0);
  for (const m of s.maps) n += (m.probability?.byteLength ?? 0) + (m.source?.grid.grid.data.byteLength ?? 0) + (m.ttaSpread?.byteLength ?? 0);
  return n;
}

/** A result as it is kept: float maps replaced by the 8-bit maps the downloads serve. */
export async function storableResult(id: string, result: SegmentResult, extra: Pick<StoredResult, 'dicom' | 'spacing' | 'original'>, keepFloatMaps = false): Promise<StoredResult> {
  const maps: StoredResult['maps'] = [];
  for (const r of result.results) {
    await yieldTurn(); // a full-image pass per map
    const grey = r.logits.from ? { source: { grid: r.logits.from, temperature: r.temperature } } : { probability: toGreyLevels(probabilityMap(r)) };
    maps.push({ ...grey, ...(r.ttaStd ? { ttaSpread: toGreyLevels(r.ttaStd, 2) } : {}) });
  }
  const none = { width: 0, height: 0, data: new Float32Array(0) };
  const results = keepFloatMaps ? result.results : result.results.map((r) => ({ ...r, logits: none, ttaStd: undefined }));
  return { id, createdAt: Date.now(), result: { ...result, results }, maps, ...extra };
}

/** A kept result: this process's, or (with shared state) one another replica made; undefined when unknown or expired. */
export const storedResultOf = (ctx: ServiceContext, id: string) => keptHereOrShared(ctx, ctx.results, 'result', id);

/** A kept volume result, as storedResultOf. */
export const storedVolumeOf = (ctx: ServiceContext, id: string) => keptHereOrShared(ctx, ctx.volumes, 'volume', id);

async function keptHereOrShared<T>(ctx: ServiceContext, here: Lru<string, T>, kind: 'result' | 'volume', id: string): Promise<T | undefined> {
  const local = here.get(id);
  if (local || !ctx.shared) return local;
  const shared = await ctx.shared.get<T>(kind, id);
  if (shared) here.set(id, shared);
  return shared;
}

/** Keeps a result here, and with shared state for every replica. */
export async function keepResult(ctx: ServiceContext, stored: StoredResult): Promise<void> {
  ctx.results.set(stored.id, stored);
  await ctx.shared?.put('result', stored.id, stored);
}

/** Keeps a volume result here, and with shared state for every replica. */
export async function keepVolume(ctx: ServiceContext, v: StoredVolume): Promise<void> {
  ctx.volumes.set(v.id, v);
  await ctx.shared?.put('volume', v.id, v);
}

/** The pipeline's model work in a slot of the inference queue (its post-processing runs outside). */
export function modelSlot(ctx: ServiceContext): ModelSlot {
  return (work) => ctx.queue.run(work, ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS);
}

export function count(ctx: ServiceContext, name: string, by = 1): void {
  ctx.counters.set(name, (ctx.counters.get(name) ?? 0) + by);
}

export async function disposeServiceContext(ctx: ServiceContext): Promise<void> {
  ctx.draining = true;
  await ctx.queue.idle();
  await ctx.pipeline.registry.dispose();
  ctx.redis?.disconnect();
  ctx.shared?.close();
}
