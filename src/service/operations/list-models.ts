import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';
import { modelKind } from '../../core/models/manifest.js';

export const ModelSummarySchema = z.object({
  id: z.string(),
  title: z.string(),
  runner: z.string(),
  kind: z.enum(['text', 'region']).describe('text: prompted by words (segment_image); region: by boxes and points (segment_region).'),
  default: z.boolean(),
  installed: z.boolean().describe('All of its files are present on this server.'),
  loaded: z.boolean().describe('Its sessions are in memory.'),
  size_bytes: z.number().int().describe('Sum of the file sizes the manifest states (0 when the hub bundle states none).'),
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
        kind: modelKind(e),
        default: e.id === reg.defaultId,
        installed: reg.installed(e),
        loaded: loaded.has(e.id),
        size_bytes: Object.values(e.files).reduce((s, f) => s + (f.bytes ?? 0), 0),
        input_size: e.input.size,
        license: e.license.weights,
      })),
    });
  },
});
