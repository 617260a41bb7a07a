import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { renderOverlay } from '../../core/image/overlay.js';
import { checkRegion, describeRegion, segmentRegions } from '../../core/pipeline/segment-region.js';
import { defineOperation } from '../operation.js';
import { ImageInputSchema, resolveImage } from '../resolve-image.js';
import { PixelSpacingSchema, SegmentOutputSchema } from '../schemas.js';
import { segmentOutput } from './segment.js';

const RegionSchema = z
  .object({
    box: z.tuple([z.number(), z.number(), z.number(), z.number()]).optional().describe('[x1, y1, x2, y2] in image pixels (x right, y down).'),
    points: z
      .array(z.tuple([z.number(), z.number(), z.union([z.literal(0), z.literal(1)])]))
      .max(16, 'at most 16 points per region')
      .optional()
      .describe('[x, y, label] in image pixels; label 1 = on the structure, 0 = background.'),
  })
  .describe('One structure to outline: a box, points, or both.');

export const segmentRegionOperation = defineOperation({
  name: 'segment_region',
  title: 'Segment the structure inside a box or at points (SAM family)',
  description:
    'Outlines one structure per region prompt (a box and/or foreground/background points in image pixels) with a box/point model such as SlimSAM or SAM. Returns the same per-mask geometry, uncertainty and verdict as segment_image; presence is taken as given. Needs a pulled region model (see list_models, kind "region").',
  http: { method: 'post', path: '/v1/segment-region' },
  input: z.object({
    image: ImageInputSchema,
    regions: z.array(RegionSchema).min(1, 'give at least one region').max(32, 'at most 32 regions per request'),
    model: z.string().optional().describe('A region model id from list_models; the first installed one when omitted.'),
    threshold: z.number().gt(0).lt(1).default(0.5).describe('Pixel probability at or above which a pixel is in the mask.'),
    outputs: z.array(z.enum(['png', 'rle', 'polygons'])).default([]).describe('Mask encodings to include inline.'),
    overlay: z.boolean().default(false).describe('Include a preview PNG of the masks over the image.'),
    pixel_spacing_mm: PixelSpacingSchema,
  }),
  output: SegmentOutputSchema,
  async run(ctx, input, extras) {
    const reg = ctx.pipeline.registry;
    const modelId = input.model ?? reg.defaultRegionId();
    if (!modelId) fail('model_unavailable', 'this server has no box/point model in its manifest', 'model');
    reg.getRegion(modelId!);
    const { id: imageId, image } = await resolveImage(ctx, input.image, input.pixel_spacing_mm, {}, { principal: extras?.principal });
    extras?.progress?.(1, 3, 'image decoded');
    // boxes and points are in the pixels of the image as sent: checked there, then carried to a working copy's
    const o = image.original;
    if (o) input.regions.forEach((r, i) => checkRegion(r, o.width, o.height, `regions[${i}]`));
    const sx = o ? image.width / o.width : 1, sy = o ? image.height / o.height : 1;
    const regions = o
      ? input.regions.map((r) => ({
          ...(r.box ? { box: [r.box[0] * sx, r.box[1] * sy, Math.min(image.width, r.box[2] * sx), Math.min(image.height, r.box[3] * sy)] as [number, number, number, number] } : {}),
          ...(r.points ? { points: r.points.map(([x, y, l]) => [Math.min(image.width - 1, x * sx), Math.min(image.height - 1, y * sy), l] as [number, number, number]) } : {}),
        }))
      : input.regions;
    const res = await ctx.queue.run(() => segmentRegions(ctx.pipeline, { image, regions, modelId: modelId!, threshold: input.threshold }), ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS);
    if (o) res.results.forEach((r, i) => (r.prompt = describeRegion(input.regions[i])));
    extras?.progress?.(2, 3, 'masks decoded');
    const out = await segmentOutput(ctx, res, imageId, image, input.outputs);
    if (input.overlay) out.overlay_png_base64 = (await renderOverlay(image, res.results.map((r) => r.mask))).toString('base64');
    extras?.progress?.(3, 3, 'done');
    return ok(out);
  },
});
