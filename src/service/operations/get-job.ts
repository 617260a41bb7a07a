import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';
import { JobSchema } from '../schemas.js';
import type { Job } from '../jobs.js';

export const getJobOperation = defineOperation({
  name: 'get_job',
  title: 'Progress and outcome of a background job',
  description: 'Returns a job started by adapt_structure: its status (queued, running, succeeded, failed), progress, and when it succeeded what it made (the adapter); when it failed, the error naming what was wrong.',
  http: { method: 'get', path: '/v1/jobs/{id}', pathParams: ['id'] },
  input: z.object({ id: z.string().min(1).max(100).describe('The job id adapt_structure returned.') }),
  output: JobSchema,
  async run(ctx, input) {
    // a job another replica runs: its state as that replica last wrote it to the shared store
    const job = ctx.jobs.get(input.id) ?? (await ctx.shared?.get<Job>('job', input.id));
    if (!job) fail('bad_input', `no job ${input.id} (jobs are kept while the server runs, the newest 200)`, 'id');
    return ok(job!);
  },
});
