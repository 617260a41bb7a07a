import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';

export const listStructuresOperation = defineOperation({
  name: 'list_structures',
  title: 'List structures the models know',
  description: 'Lists the anatomical structures and findings in the prompt vocabulary, with synonyms, modality and a short description. Prompt with these names for reliable results; filter by modality (e.g. xray, ct, mri, ultrasound).',
  http: { method: 'get', path: '/v1/structures' },
  input: z.object({ modality: z.string().optional().describe('Only structures of this modality.') }),
  output: z.object({
    vocabulary_version: z.string(),
    modalities: z.array(z.string()),
    structures: z.array(z.object({
      slug: z.string(),
      name: z.string(),
      synonyms: z.array(z.string()),
      modality: z.string(),
      description: z.string(),
      parent: z.string().nullable(),
      laterality: z.string().nullable(),
    })),
  }),
  async run(ctx, input) {
    const v = ctx.pipeline.vocabulary;
    if (input.modality !== undefined && !v.modalities().includes(input.modality)) {
      fail('unknown_structure', `no structures for modality "${input.modality}"; known modalities: ${v.modalities().join(', ')}`, 'modality');
    }
    return ok({
      vocabulary_version: v.data.version,
      modalities: v.modalities(),
      structures: v.list(input.modality).map((s) => ({
        slug: s.slug, name: s.name, synonyms: s.synonyms, modality: s.modality, description: s.description, parent: s.parent, laterality: s.laterality,
      })),
    });
  },
});
