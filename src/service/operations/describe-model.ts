import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';

export const describeModelOperation = defineOperation({
  name: 'describe_model',
  title: 'Describe a model (model card)',
  description: "Returns a model's manifest entry (files, input spec, licences, training summary) and its model card: data, intended use, limitations and measured figures.",
  http: { method: 'get', path: '/v1/models/{id}', pathParams: ['id'] },
  input: z.object({ id: z.string().min(1).describe('Model id from list_models.') }),
  output: z.object({
    id: z.string(),
    title: z.string(),
    runner: z.string(),
    description: z.string(),
    input: z.record(z.string(), z.unknown()),
    files: z.record(z.string(), z.object({ sha256: z.string(), bytes: z.number() })),
    license: z.object({ code: z.string(), weights: z.string(), training_data: z.string() }),
    vocabulary_version: z.string(),
    training: z.record(z.string(), z.unknown()).optional(),
    card_markdown: z.string(),
  }),
  async run(ctx, input) {
    const e = ctx.pipeline.registry.entry(input.id);
    const cardPath = path.join(ctx.config.PROMPTSEG_MODELS_DIR, e.dir, e.card);
    return ok({
      id: e.id,
      title: e.title,
      runner: e.runner,
      description: e.description,
      input: e.input,
      files: e.files,
      license: e.license,
      vocabulary_version: e.vocabulary_version,
      training: e.training,
      card_markdown: existsSync(cardPath) ? readFileSync(cardPath, 'utf8') : '(no model card installed)',
    });
  },
});
