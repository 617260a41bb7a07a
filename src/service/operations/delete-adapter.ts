import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';

export const deleteAdapterOperation = defineOperation({
  name: 'delete_adapter',
  title: 'Delete an adapter',
  description: 'Removes an adapter file from the adapters folder; its structure is no longer served.',
  http: { method: 'delete', path: '/v1/adapters/{id}', pathParams: ['id'] },
  input: z.object({ id: z.string().min(1).max(100).describe('The adapter id (list_adapters).') }),
  output: z.object({ deleted: z.string() }),
  async run(ctx, input) {
    if (!ctx.pipeline.adapters?.remove(input.id)) fail('unknown_structure', `no adapter ${input.id}`, 'id');
    await ctx.shared?.withdrawAdapter(input.id); // and from every replica
    return ok({ deleted: input.id });
  },
});
