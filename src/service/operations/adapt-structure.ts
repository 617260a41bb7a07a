import { realpath } from 'node:fs/promises';
import { z } from 'zod';
import { AppFailure, fail, ok } from '../../core/errors.js';
import { runDetached } from '../../core/pipeline/cancel.js';
import { adapterSummary, adaptFromFolder, prepareAdaptation } from '../adapt-from-folder.js';
import { defineOperation } from '../operation.js';
import { realPathInRoots } from '../resolve-image.js';
import { JobSchema } from '../schemas.js';

export const adaptStructureOperation = defineOperation({
  name: 'adapt_structure',
  title: 'Teach the model a structure from labelled images (few-shot adapter)',
  description:
    'Makes an adapter: a small head on the model\'s frozen image features, fitted on a few labelled images of a structure the model does not know, then calibrated on the folder\'s validation images. Once made, the structure is segmented by its name and synonyms like a built-in one (segment, list_structures). The folder is in the layout dataset.json, images/, masks/<structure>/, optional splits.json (support images from train, calibration on val), on the server inside PROMPTSEG_ALLOWED_ROOTS. Returns a job: over HTTP at once (poll get_job), over MCP when done, with progress notifications (wait: false returns at once there too).',
  http: { method: 'post', path: '/v1/adapters' },
  input: z.object({
    folder: z.string().min(1).max(4096).describe('Path of the labelled folder on the server, inside the allowed roots.'),
    structure: z.string().min(1).max(64).describe('The structure to learn: its masks are masks/<structure>/<case>.png.'),
    name: z.string().min(1).max(100).optional().describe("The name prompts use (default: the structure's name in dataset.json)."),
    synonyms: z.array(z.string().min(1).max(100)).max(20).optional().describe('Other names prompts may use (default: those in dataset.json).'),
    shots: z.number().int().min(1).max(10_000).optional().describe('How many train images to learn from (drawn by the seed); default all.'),
    seed: z.number().int().min(0).max(2 ** 31 - 1).optional().describe('Seed of the support draw and the fit (default 1): the same seed gives the same adapter.'),
    model: z.string().optional().describe('The model to adapt (default: the default model).'),
    wait: z.boolean().optional().describe('Answer when the adapter is made (default: true over MCP and the CLI, false over HTTP).'),
  }),
  output: JobSchema,
  async run(ctx, input, extras) {
    let folder = input.folder;
    if (extras?.via === 'http' || extras?.via === 'mcp') {
      // a remote caller names folders on this server only inside the allowed roots (as image.path)
      const roots = ctx.config.PROMPTSEG_ALLOWED_ROOTS;
      if (!roots.length) fail('invalid_argument', 'reading folders by path is disabled: the server has no PROMPTSEG_ALLOWED_ROOTS', 'folder');
      const real = await realpath(folder).catch(() => undefined);
      if (!real || !(await realPathInRoots(real, roots))) fail('invalid_argument', `no readable folder at ${input.folder} inside the allowed roots`, 'folder');
      folder = real!;
    }
    const prepared = prepareAdaptation(ctx, { folder, structure: input.structure, name: input.name, synonyms: input.synonyms, shots: input.shots, seed: input.seed, model: input.model });
    if (ctx.jobQueue.depth >= 8) fail('overloaded', 'eight adaptations are already waiting; retry when one has finished');
    const job = ctx.jobs.create('adapt');
    const stop = new AbortController();
    const done = runDetached(stop.signal, () =>
      ctx.jobQueue.run(async () => {
        ctx.jobs.update(job.id, { status: 'running', progress: { done: 0, total: 1, message: 'reading the labelled images' } });
        const a = await adaptFromFolder(ctx, prepared, (d, t, message) => {
          ctx.jobs.update(job.id, { progress: { done: d, total: t, message } });
          extras?.progress?.(d, t, message);
        });
        return a;
      }, 24 * 3600_000),
    ).then(
      async (a) => {
        await ctx.shared?.publishAdapter(a.file); // every replica serves it from its next request
        ctx.jobs.update(job.id, { status: 'succeeded', finished_at: new Date().toISOString(), progress: { done: 1, total: 1, message: `adapter ${a.file.id} made` }, result: { adapter: adapterSummary(a) } });
      },
      (e) => {
        const error = e instanceof AppFailure ? e.error : { kind: 'internal' as const, message: 'an internal error occurred; it has been logged' };
        if (!(e instanceof AppFailure)) process.stderr.write(`[promptseg] adaptation ${job.id} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
        ctx.jobs.update(job.id, { status: 'failed', finished_at: new Date().toISOString(), error });
      },
    );
    const wait = input.wait ?? extras?.via !== 'http';
    if (wait) await done;
    return ok(ctx.jobs.get(job.id)!);
  },
});
