import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { adapterSummary } from '../adapt-from-folder.js';
import { defineOperation } from '../operation.js';
import { AdapterSummarySchema } from '../schemas.js';

export const listAdaptersOperation = defineOperation({
  name: 'list_adapters',
  title: 'List adapters (structures taught from labelled images)',
  description: 'Lists the adapters this server serves: each structure taught to a model by adapt_structure, with how it was made (k images, seed, source folder hash) and its figures on the validation images. Adapter files in the folder that are not served are listed with the reason.',
  http: { method: 'get', path: '/v1/adapters' },
  input: z.object({}),
  output: z.object({
    adapters: z.array(AdapterSummarySchema),
    not_served: z.array(z.object({ file: z.string(), reason: z.string() })),
  }),
  async run(ctx) {
    const set = ctx.pipeline.adapters;
    return ok({ adapters: (set?.list() ?? []).map(adapterSummary), not_served: set?.problems() ?? [] });
  },
});
