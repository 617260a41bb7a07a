import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { batchStatus, redisClient } from '../batch.js';
import { defineOperation } from '../operation.js';

export const BatchStatusSchema = z.object({
  id: z.string(),
  total: z.number().int(),
  done: z.number().int(),
  failed: z.number().int(),
  pending: z.number().int(),
  out: z.string().describe('The folder the outputs are written to.'),
  created: z.string(),
  failures: z.array(z.object({ index: z.number().int(), file: z.string(), reason: z.string(), kind: z.string() })).describe('Inputs that failed, with the reason (bad input is not retried).'),
  summary: z.string().optional().describe('Set once every input is done or failed: the summary.json written to the output folder.'),
});

export const getBatchOperation = defineOperation({
  name: 'get_batch',
  title: 'Progress of a batch job',
  description: 'Returns a batch submitted with `promptseg batch submit` (one queued job per image, run by `promptseg worker` processes): how many inputs are done, failed (with reasons) and pending, where the outputs go, and the summary once complete. Needs PROMPTSEG_REDIS_URL.',
  http: { method: 'get', path: '/v1/batches/{id}', pathParams: ['id'] },
  input: z.object({ id: z.string().regex(/^[0-9a-f-]{36}$/, 'a batch id is the UUID `promptseg batch submit` printed').describe('The batch id.') }),
  output: BatchStatusSchema,
  async run(ctx, input) {
    const url = ctx.config.PROMPTSEG_REDIS_URL;
    if (!url) fail('invalid_argument', 'this server has no batch queue: set PROMPTSEG_REDIS_URL to the Redis the workers use', 'id');
    ctx.redis ??= redisClient(url!, { failFast: true });
    let status;
    try {
      status = await batchStatus(ctx.redis, input.id);
    } catch (e) {
      fail('upstream_failed', `the batch queue's Redis did not answer: ${(e as Error).message}`);
    }
    if (!status) fail('bad_input', `no batch ${input.id} in the queue's Redis`, 'id');
    return ok(status!);
  },
});
