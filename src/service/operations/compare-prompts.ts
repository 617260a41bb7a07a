import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { segment } from '../../core/pipeline/segment.js';
import { modelSlot } from '../context.js';
import { upscaledStats } from '../../core/image/working-resolution.js';
import { defineOperation } from '../operation.js';
import { ImageInputSchema, resolveImage } from '../resolve-image.js';
import { MaskThresholdSchema } from '../schemas.js';

export const comparePromptsOperation = defineOperation({
  name: 'compare_prompts',
  title: 'Compare phrasings of a structure on one image',
  description:
    'Segments one image with two or more phrasings (e.g. "left lung" vs "L lung field") and reports, per phrasing, presence and verdict, and for each pair the Dice overlap of their masks. Use it to check whether a result depends on wording.',
  http: { method: 'post', path: '/v1/compare' },
  input: z.object({
    image: ImageInputSchema,
    prompts: z.array(z.string().trim().min(1, 'a prompt is empty').max(200)).min(2, 'give at least two prompts to compare').max(8, 'at most 8 prompts'),
    model: z.string().optional(),
    threshold: MaskThresholdSchema,
  }),
  output: z.object({
    image_id: z.string(),
    prompts: z.array(z.object({ prompt: z.string(), structure: z.string().nullable(), presence: z.number(), verdict: z.string(), area_px: z.number().int() })),
    pairs: z.array(z.object({ a: z.number().int(), b: z.number().int(), dice: z.number(), presence_difference: z.number() })),
    consistent: z.boolean().describe('true when every pair agrees on presence and, where both produced masks, overlaps with Dice >= 0.8.'),
  }),
  async run(ctx, input, extras) {
    if (input.model !== undefined) ctx.pipeline.registry.entry(input.model);
    const { id, image } = await resolveImage(ctx, input.image, undefined, {}, { principal: extras?.principal });
    const res = await segment(ctx.pipeline, { image, prompts: input.prompts, modelId: input.model, threshold: input.threshold }, modelSlot(ctx));
    if (res.results.length < 2) fail('internal', 'comparison produced fewer than two results');
    const pairs = [];
    let consistent = true;
    for (let a = 0; a < res.results.length; a++) {
      for (let b = a + 1; b < res.results.length; b++) {
        const ma = res.results[a].mask, mb = res.results[b].mask;
        let inter = 0, sa = 0, sb = 0;
        for (let i = 0; i < ma.length; i++) {
          sa += ma[i]; sb += mb[i];
          if (ma[i] && mb[i]) inter++;
        }
        const dice = sa + sb === 0 ? 1 : (2 * inter) / (sa + sb);
        const pd = Math.abs(res.results[a].presence - res.results[b].presence);
        if ((res.results[a].presence >= 0.5) !== (res.results[b].presence >= 0.5) || (sa > 0 && sb > 0 && dice < 0.8)) consistent = false;
        pairs.push({ a, b, dice: Math.round(dice * 1e4) / 1e4, presence_difference: Math.round(pd * 1e4) / 1e4 });
      }
    }
    return ok({
      image_id: id,
      prompts: res.results.map((r) => ({ prompt: r.prompt, structure: r.structure?.slug ?? null, presence: Math.round(r.presence * 1e4) / 1e4, verdict: r.verdict, area_px: image.original ? upscaledStats(r.mask, res.width, res.height, image.original.width, image.original.height).areaPx : r.stats.areaPx })),
      pairs,
      consistent,
    });
  },
});
