import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';

export const ModelSummarySchema = z.object({
  id: z.string(),
  title: z.string(),
  runner: z.string(),
  default: z.boolean(),
  installed: z.boolean().describe('All of its files are present on this server.'),
  loaded: z.boolean().describe('Its sessions are in memory.'),
  size_bytes: z.number().int(),
  input_size: z.number().int(),
  license: z.string(),
});

export const listModelsOperation = defineOperation({
  name: 'list_models',
  title: 'List models',
  description: 'Lists the segmentation models this server knows, which one is the default, and whether each is installed and loaded.',
  http: { method: 'get', path: '/v1/models' },
  input: z.object({}),
  output: z.object({ default: z.string(), models: z.array(ModelSummarySchema) }),
  async run(ctx) {
    const reg = ctx.pipeline.registry;
    const loaded = new Set(reg.loadedIds());
    return ok({
      default: reg.defaultId,
      models: reg.entries().map((e) => ({
        id: e.id,
        title: e.title,
        runner: e.runner,
        default: e.id === reg.defaultId,
        installed: Object.keys(e.files).length > 0 && Object.keys(e.files).every((f) => existsSync(path.join(ctx.config.PROMPTSEG_MODELS_DIR, e.dir, f))),
        loaded: loaded.has(e.id),
        size_bytes: Object.values(e.files).reduce((s, f) => s + f.bytes, 0),
        input_size: e.input.size,
        license: e.license.weights,
      })),
    });
  },
});
