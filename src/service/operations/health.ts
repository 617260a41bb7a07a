import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';

export const healthOperation = defineOperation({
  name: 'health',
  mcpName: 'check_health',
  title: 'Service health',
  description: 'Reports whether the service is up, which models are loaded, queue depth and uptime.',
  http: { method: 'get', path: '/healthz' },
  input: z.object({}),
  output: z.object({
    status: z.enum(['ok', 'draining']),
    version: z.string(),
    uptime_s: z.number(),
    models_loaded: z.array(z.string()),
    queue: z.object({ active: z.number().int(), waiting: z.number().int() }),
  }),
  async run(ctx) {
    return ok({
      status: ctx.draining ? ('draining' as const) : ('ok' as const),
      version: ctx.version,
      uptime_s: Math.round((Date.now() - ctx.startedAt) / 1000),
      models_loaded: ctx.pipeline.registry.loadedIds(),
      queue: { active: ctx.queue.active, waiting: ctx.queue.depth },
    });
  },
});
