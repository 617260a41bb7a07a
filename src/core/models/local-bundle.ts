import { existsSync } from 'node:fs';
import path from 'node:path';
import { env as hfEnv } from '@huggingface/transformers';
import { fail } from '../errors.js';
import type { ModelEntry } from './manifest.js';

/** The bundle's folder, after checking every manifest file is there (model_unavailable names the pull command). */
export function bundleDir(modelsDir: string, entry: ModelEntry): string {
  const dir = path.join(modelsDir, entry.dir);
  for (const f of Object.keys(entry.files)) {
    if (!existsSync(path.join(dir, f))) {
      const how = entry.hub ? `; run: promptseg models pull ${entry.id}` : entry.convert ? `; make it where its weights are available: ${entry.convert.command}` : '';
      fail('model_unavailable', `model ${entry.id} is not installed (missing ${f} in ${dir})${how}`);
    }
  }
  return dir;
}

/**
 * Points @huggingface/transformers at a local folder and forbids the network, so that
 * from_pretrained(<folder name>) reads only files already on disk. Returns the id to pass.
 */
export function localTransformersId(dir: string): string {
  hfEnv.allowRemoteModels = false;
  hfEnv.allowLocalModels = true;
  hfEnv.localModelPath = path.dirname(dir) + path.sep;
  return path.basename(dir);
}

/**
 * onnxruntime session options. Every session has its own intra-op thread pool, and a process holds
 * several (image encoder, text encoder, mask decoder, specialists...): pools whose idle threads
 * spin take the cores from each other and from the event loop, so they wait without spinning
 * (on 2 cores this halves the image encoder's and mask decoder's own times; `npm run bench:model`).
 */
export const sessionOptions = (threads: number) => ({ intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, extra: { session: { intra_op: { allow_spinning: '0' } } } });

/** Loads a runner's sessions once, on first use; a failed load is retried by the next call. */
export abstract class LazyRunner {
  private loading?: Promise<void>;

  constructor(readonly entry: ModelEntry, protected readonly opts: { modelsDir: string; threads: number }) {}

  abstract get loaded(): boolean;
  protected abstract doLoad(): Promise<void>;

  load(): Promise<void> {
    this.loading ??= this.doLoad().catch((e) => {
      this.loading = undefined;
      throw e;
    });
    return this.loading;
  }

  /** Forget the sessions (after dispose), so the next load() reads them again. */
  protected unload(): void {
    this.loading = undefined;
  }
}
