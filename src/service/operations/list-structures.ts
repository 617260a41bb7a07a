import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { modalitiesOf } from '../../core/vocabulary.js';
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
      modalities: z.array(z.string()).describe('Every modality the structure is known in (ground-glass opacity: ct and xray).'),
      description: z.string(),
      parent: z.string().nullable(),
      laterality: z.string().nullable(),
      adapter: z.string().optional().describe('Set for a structure taught by an adapter (adapt_structure): the adapter id.'),
    })),
  }),
  async run(ctx, input) {
    const v = ctx.pipeline.vocabulary;
    const adapters = ctx.pipeline.adapters?.list() ?? [];
    const modalities = [...new Set([...v.modalities(), ...adapters.map((a) => a.structure.modality)])].sort();
    if (input.modality !== undefined && !modalities.includes(input.modality)) {
      fail('unknown_structure', `no structures for modality "${input.modality}"; known modalities: ${modalities.join(', ')}`, 'modality');
    }
    const taught = adapters.filter((a) => input.modality === undefined || a.structure.modality === input.modality);
    return ok({
      vocabulary_version: v.data.version,
      modalities,
      structures: [
        ...v.list(input.modality).map((s) => ({
          slug: s.slug, name: s.name, synonyms: s.synonyms, modality: s.modality, modalities: modalitiesOf(s), description: s.description, parent: s.parent, laterality: s.laterality,
        })),
        ...taught.map(({ structure: s, file }) => ({ slug: s.slug, name: s.name, synonyms: s.synonyms, modality: s.modality, modalities: [s.modality], description: s.description, parent: null, laterality: null, adapter: file.id })),
      ],
    });
  },
});
