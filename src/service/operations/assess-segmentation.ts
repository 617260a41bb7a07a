import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { upscaledComponents } from '../../core/image/working-resolution.js';
import { storedResultOf } from '../context.js';
import { defineOperation } from '../operation.js';
import { ReasonSchema } from '../schemas.js';

export const assessSegmentationOperation = defineOperation({
  name: 'assess_segmentation',
  title: 'Detailed trust report for an earlier result',
  description:
    'Explains the verdict of an earlier segment result: per-component areas and boxes, uncertainty figures, the reasons with their thresholds, and links to the probability and uncertainty maps. Call it after segment when the verdict is review, or before relying on a mask.',
  http: { method: 'post', path: '/v1/assess' },
  input: z.object({
    result_id: z.string().min(1).describe('result_id from an earlier segment call.'),
    index: z.number().int().min(0).default(0).describe('Which prompt of that result (0-based).'),
  }),
  output: z.object({
    result_id: z.string(),
    index: z.number().int(),
    prompt: z.string(),
    structure: z.string().nullable(),
    verdict: z.enum(['accept', 'review', 'reject']),
    reasons: z.array(ReasonSchema),
    presence: z.number(),
    predicted_quality: z.number(),
    similarity: z.number(),
    uncertainty: z.object({ boundary_entropy_bits: z.number(), uncertain_fraction: z.number(), mean_confidence: z.number() }),
    area_fraction: z.number(),
    components: z.array(z.object({ area_px: z.number().int(), bbox: z.tuple([z.number(), z.number(), z.number(), z.number()]), share_of_mask: z.number() })),
    probability_map_uri: z.string(),
    uncertainty_map_uri: z.string(),
    probability_map_url: z.string(),
    uncertainty_map_url: z.string(),
    explanation: z.string(),
  }),
  async run(ctx, input) {
    const stored = await storedResultOf(ctx, input.result_id);
    if (!stored) fail('invalid_argument', `result ${input.result_id} is unknown or has expired; segment the image again`, 'result_id');
    const res = stored!.result;
    const r = res.results[input.index];
    if (!r) fail('invalid_argument', `result ${input.result_id} has ${res.results.length} prompt(s); index ${input.index} is out of range`, 'index');
    // in the pixels of the image as sent, also for a result made on a working copy
    const { width, height } = stored!.original ?? res;
    const parts = upscaledComponents(r.mask, res.width, res.height, width, height);
    const total = parts.reduce((n, c) => n + c.areaPx, 0);
    const comps = parts
      .map((c) => ({ area_px: c.areaPx, bbox: c.bbox, share_of_mask: Math.round((c.areaPx / total) * 1e4) / 1e4 }))
      .sort((a, b) => b.area_px - a.area_px)
      .slice(0, 50);
    const base = `results/${input.result_id}`;
    const explanation =
      r.verdict === 'accept'
        ? `The model is confident the ${r.structure?.name ?? 'structure'} is present (presence ${(r.presence * 100).toFixed(0)}%) and no check raised a concern.`
        : r.reasons.map((x) => x.message).join(' ');
    return ok({
      result_id: input.result_id,
      index: input.index,
      prompt: r.prompt,
      structure: r.structure?.slug ?? null,
      verdict: r.verdict,
      reasons: r.reasons,
      presence: r.presence,
      predicted_quality: r.predictedQuality,
      similarity: r.similarity,
      uncertainty: { boundary_entropy_bits: r.uncertainty.boundaryEntropy, uncertain_fraction: r.uncertainty.uncertainFraction, mean_confidence: r.uncertainty.meanConfidence },
      area_fraction: total / (width * height),
      components: comps,
      probability_map_uri: `promptseg://${base}/probability/${input.index}.png`,
      uncertainty_map_uri: `promptseg://${base}/uncertainty/${input.index}.png`,
      probability_map_url: `/v1/${base}/probability/${input.index}.png`,
      uncertainty_map_url: `/v1/${base}/uncertainty/${input.index}.png`,
      explanation,
    });
  },
});
