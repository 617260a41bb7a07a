/**
 * A benchmark peer: the CLIPSeg rd64-refined architecture (CLIP ViT-B/16 at 352 px, CLIP text
 * transformer, refined rd64 decoder) with random weights, timed in this process through the
 * project's own CLIPSeg runner, so that its latency can be set beside our model's on the same
 * machine and thread count. The bundle is made (about 600 MB, git-ignored) by
 *
 *     /usr/bin/python3 models/tiny/make_tiny_models.py --full-size models/.peer/clipseg-rd64-full
 *
 * which also writes the manifest.json the registry reads from that folder. Random weights: the
 * numbers say how fast the architecture runs here, nothing about how well it segments. The bench
 * runs it through the same pipeline as the built-in model (segment(): decode, masks, statistics,
 * trust), so the two are compared end to end.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelRegistry } from '../core/models/registry.js';
import { createPipelineContext, type PipelineContext } from '../core/pipeline/segment.js';
import type { Vocabulary } from '../core/vocabulary.js';

/** The peer's pipeline context (its own registry, the project's vocabulary), or why there is none. */
export async function openClipsegPeer(dir: string, threads: number, vocabulary: Vocabulary): Promise<{ ctx: PipelineContext; id: string; close: () => Promise<void> } | { skipped: string }> {
  if (!existsSync(path.join(dir, 'manifest.json'))) {
    return { skipped: `no full-size CLIPSeg graph at ${dir}; make it with: /usr/bin/python3 models/tiny/make_tiny_models.py --full-size ${dir}` };
  }
  const reg = new ModelRegistry(path.resolve(dir), threads);
  await reg.get().load();
  return { ctx: createPipelineContext(reg, vocabulary, 8), id: reg.defaultId, close: () => reg.dispose() };
}
