import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/env.js';
import { PROJECT_ROOT } from '../config/env.js';
import { ModelRegistry } from '../core/models/registry.js';
import { createPipelineContext, type PipelineContext, type SegmentResult } from '../core/pipeline/segment.js';
import { Lru } from '../core/pipeline/lru.js';
import type { RasterImage } from '../core/image/raster.js';
import type { DicomSource } from '../core/image/dicom.js';
import { Vocabulary } from '../core/vocabulary.js';
import { InferenceQueue } from './inference-queue.js';

export interface StoredResult {
  id: string;
  createdAt: number;
  result: SegmentResult;
  /** The source DICOM's identity and geometry, when the image came from DICOM (for DICOM SEG). */
  dicom?: DicomSource;
  spacing?: { row: number; col: number };
}

/** Everything the operations share: config, models, caches, the inference queue, stored results. */
export interface ServiceContext {
  config: Config;
  pipeline: PipelineContext;
  queue: InferenceQueue;
  /** Decoded images by id (their sha256), so a caller can prompt an image again without resending it. */
  images: Lru<string, RasterImage>;
  /** Recent volume results by id: one NIfTI mask (.nii.gz bytes) per prompt. */
  volumes: Lru<string, { id: string; createdAt: number; files: Buffer[] }>;
  /** Recent segmentation results by id, for mask and report downloads. */
  results: Lru<string, StoredResult>;
  startedAt: number;
  version: string;
  counters: Map<string, number>;
  draining: boolean;
}

export function createServiceContext(config: Config): ServiceContext {
  const registry = new ModelRegistry(config.PROMPTSEG_MODELS_DIR, config.PROMPTSEG_THREADS, config.PROMPTSEG_EXTRA_MANIFESTS);
  const vocabulary = Vocabulary.fromProject(PROJECT_ROOT);
  const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  return {
    config,
    pipeline: createPipelineContext(registry, vocabulary, config.PROMPTSEG_CACHE_IMAGES),
    queue: new InferenceQueue(config.PROMPTSEG_CONCURRENCY, config.PROMPTSEG_QUEUE_SIZE),
    images: new Lru(Math.max(4, config.PROMPTSEG_CACHE_IMAGES)),
    results: new Lru(config.PROMPTSEG_RESULTS_KEPT),
    volumes: new Lru(Math.max(2, Math.ceil(config.PROMPTSEG_RESULTS_KEPT / 8))),
    startedAt: Date.now(),
    version: pkg.version,
    counters: new Map(),
    draining: false,
  };
}

export function count(ctx: ServiceContext, name: string, by = 1): void {
  ctx.counters.set(name, (ctx.counters.get(name) ?? 0) + by);
}

export async function disposeServiceContext(ctx: ServiceContext): Promise<void> {
  ctx.draining = true;
  await ctx.queue.idle();
  await ctx.pipeline.registry.dispose();
}
