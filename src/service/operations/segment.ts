import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { fail, ok } from '../../core/errors.js';
import { maskToCocoRle, maskToPng, maskToPolygons } from '../../core/image/mask-encode.js';
import { renderOverlay } from '../../core/image/overlay.js';
import { segment } from '../../core/pipeline/segment.js';
import { IMAGE_TRANSFORMS } from '../../core/pipeline/image-tta.js';
import { count, keepResult, modelSlot, storableResult, type ServiceContext } from '../context.js';
import type { SegmentResult } from '../../core/pipeline/segment.js';
import type { RasterImage } from '../../core/image/raster.js';
import { defineOperation } from '../operation.js';
import { ImageInputSchema, resolveImage } from '../resolve-image.js';
import { checkCost } from '../request-cost.js';
import { yieldTurn } from '../../core/pipeline/cancel.js';
import { upscaledStats, upscaleMask } from '../../core/image/working-resolution.js';
import { DISCLAIMER, MaskThresholdSchema, SegmentOutputSchema, type SegmentOutput, PixelSpacingSchema } from '../schemas.js';

export const SegmentInputSchema = z.object({
  image: ImageInputSchema,
  prompts: z
    .array(z.string().trim().min(1, 'a prompt is empty').max(200, 'a prompt is over 200 characters'))
    .min(1, 'give at least one prompt')
    .describe('One or more structures to find, e.g. ["left lung", "heart"]. Use names from list_structures for reliable results.'),
  model: z.string().optional().describe('Model id from list_models; the default model when omitted.'),
  threshold: MaskThresholdSchema,
  outputs: z.array(z.enum(['png', 'rle', 'polygons'])).default([]).describe('Mask encodings to include inline; the mask is always downloadable by mask_url / mask_uri.'),
  overlay: z.boolean().default(false).describe('Include a preview PNG of the masks over the image (longer side at most 512 px).'),
  tta: z.number().int().min(0).max(8).default(0).describe('Test-time augmentation: average this many paraphrases of each prompt (they reuse the cached image features, about one decoder pass each) and report their disagreement. 0 = off.'),
  tta_image: z.union([z.literal('auto'), z.number().int().min(0).max(IMAGE_TRANSFORMS.length)]).default('auto').describe("Image-side test-time augmentation: average this many transformed copies of the image (in order: a horizontal flip, only for structures that are neither lateral nor thoracic; a transpose*; gamma 0.8; a quarter turn clockwise*; a 3% shift; a quarter turn anticlockwise*; gamma 1.25; an anti-transpose*; a -3% shift; scale 1.1; scale 0.9; a vertical flip, non-lateral non-thoracic only; * = only for images with no preferred orientation: EM, histology, dermoscopy). A prompt that took the second, closer look has its crop transformed instead of the whole image. Each costs one image-encoder pass. 0 = off; auto: the count the model's calibration chose for each structure where it raised Dice on val (polyps, for example), none for the others, and none where the first look already finds the structure clearly absent."),
  conformal_recall: z.enum(['0.8', '0.9', '0.95']).optional().describe('Return conformal masks whose expected recall of the true structure is at least this (thresholds fitted per structure on val; vocabulary structures only).'),
  zoom: z.enum(['auto', 'on', 'off']).default('auto').describe("Second, closer look at small structures (a crop around the first mask, run again). auto: for the structures where it raised Dice on val (the model's calibration lists them; where several specialists may redraw a structure, the one that raised it most)."),
  specialist: z.enum(['auto', 'on', 'off']).default('auto').describe("Redraw the mask with the model's specialist for the structure, where it has one (list_models shows them: an image encoder and mask decoder fine-tuned on that structure, or a U-Net trained on its dataset alone, which redraws a structure also answered on other kinds of image only on images like its own; presence still comes from the first look). auto: for the structures where it raised Dice on val (the model's calibration lists them; where several specialists may redraw a structure, the one that raised it most)."),
  largest_component: z.enum(['auto', 'on', 'off']).default('auto').describe("Keep only the mask's largest connected component. auto: for the structures where it raised Dice on val (the model's calibration lists them); on: every vocabulary structure; never for conformal masks."),
  generic_words: z.enum(['resolve', 'literal']).default('resolve').describe("Generic words for a finding (lesion, tumour, mass, abnormality, nodule, finding...) that name no structure: resolve reads them by what the image is (its nearest training set: a FLAIR slice's lesion is its FLAIR abnormality, a dermoscopy image's the skin lesion, a colonoscopy's the polyp) and says so in `resolution`; where the image's kind has no such finding, or the image is unlike all of them, the answer is a rejection naming why. literal: send them to the model as they are."),
  refine: z.string().optional().describe("A box/point model id from list_models (SAM family): each mask is redrawn by that model from the text model's mask box (MedCLIP-SAM style). 'none' turns off a model's default refinement."),
  frame: z.number().int().min(0).optional().describe('DICOM: which frame of a multi-frame file (default 0).'),
  window: z.object({ center: z.number(), width: z.number().positive() }).optional().describe('DICOM grey images: display window in modality units (HU for CT) for every prompt. By default CT uses each structure\'s window (lung, mediastinum, abdomen, bone, brain), other images the file\'s window or robust percentiles.'),
  window_preset: z.enum(['lung', 'mediastinum', 'abdomen', 'bone', 'brain']).optional().describe('DICOM grey images: a named CT window for every prompt.'),
  pixel_spacing_mm: PixelSpacingSchema.describe('[row, column] spacing in mm, so areas are also given in mm².'),
});

export const segmentOperation = defineOperation({
  name: 'segment',
  mcpName: 'segment_image',
  title: 'Segment structures named by text prompts',
  description:
    'Segments each prompted structure in a medical image and reports, per prompt, whether the structure is present, the mask geometry, uncertainty and a trust verdict (accept / review / reject) with reasons. Absent structures and nonsense prompts are rejected with an empty mask.',
  http: { method: 'post', path: '/v1/segment' },
  input: SegmentInputSchema,
  output: SegmentOutputSchema,
  async run(ctx, input, extras) {
    const max = ctx.config.PROMPTSEG_MAX_PROMPTS;
    if (input.prompts.length > max) fail('invalid_argument', `${input.prompts.length} prompts given; at most ${max} per request`, 'prompts');
    const tooLong = input.prompts.find((p) => p.length > ctx.config.PROMPTSEG_MAX_PROMPT_CHARS);
    if (tooLong) fail('invalid_argument', `a prompt is over ${ctx.config.PROMPTSEG_MAX_PROMPT_CHARS} characters`, 'prompts');
    if (input.model !== undefined) ctx.pipeline.registry.get(input.model);
    if (input.refine !== undefined && input.refine !== 'none') ctx.pipeline.registry.getRegion(input.refine);
    if (input.window && input.window_preset) fail('invalid_argument', 'give window or window_preset, not both', 'window');
    const win = input.window ? ([input.window.center, input.window.width] as [number, number]) : input.window_preset ? ctx.pipeline.vocabulary.data.windows[input.window_preset] : undefined;
    const { id: imageId, image } = await resolveImage(ctx, input.image, input.pixel_spacing_mm, { frame: input.frame, window: win }, { principal: extras?.principal, upload: extras?.upload });
    checkCost({ width: image.width, height: image.height, prompts: input.prompts.length, tta: input.tta, ttaImage: input.tta_image, zoom: input.zoom, specialist: input.specialist }, ctx.config.PROMPTSEG_MAX_COST);
    extras?.progress?.(1, 3, 'image decoded');
    // the model's passes take a slot of the inference queue; masks and trust are made outside it
    const res = await segment(
      ctx.pipeline,
      { image, prompts: input.prompts, modelId: input.model, threshold: input.threshold, conformalRecall: input.conformal_recall, tta: input.tta, ttaImage: input.tta_image, refine: input.refine, zoom: input.zoom === 'auto' ? 'auto' : input.zoom === 'on', specialist: input.specialist === 'auto' ? 'auto' : input.specialist === 'on', largestComponent: input.largest_component === 'auto' ? 'auto' : input.largest_component === 'on', genericWords: input.generic_words },
      modelSlot(ctx),
    );
    extras?.progress?.(2, 3, 'masks decoded');
    const out = await segmentOutput(ctx, res, imageId, image, input.outputs);
    if (input.overlay) out.overlay_png_base64 = (await renderOverlay(image, res.results.map((r) => r.mask))).toString('base64');
    extras?.progress?.(3, 3, 'done');
    return ok(out);
  },
});

/** Where a result's answers are reported: the size that was sent (a result made on a working copy is scaled back to it), its spacing and its stored id. */
interface ReportFrame {
  resultId: string;
  /** The size that was sent, and the model's grid it was segmented on. */
  W: number;
  H: number;
  w: number;
  h: number;
  /** True when the result was made on a smaller working copy. */
  scaled: boolean;
  spacing: RasterImage['spacing'];
  dicom: boolean;
}

/** The wire form of a segmentation result (shared by segment_image and segment_region); stores it for mask downloads. */
export async function segmentOutput(ctx: ServiceContext, res: SegmentResult, imageId: string, image: RasterImage, outputs: ('png' | 'rle' | 'polygons')[]): Promise<SegmentOutput> {
  const resultId = randomUUID();
  const o = image.original;
  const frame: ReportFrame = { resultId, W: o?.width ?? res.width, H: o?.height ?? res.height, w: res.width, h: res.height, scaled: !!o, spacing: o ? o.spacing : image.spacing, dicom: !!image.dicom };
  await keepResult(ctx, await storableResult(resultId, res, { dicom: image.dicom, spacing: frame.spacing, ...(o ? { original: { width: frame.W, height: frame.H } } : {}) }, ctx.keepFloatMaps));
  count(ctx, 'segment_prompts_total', res.results.length);
  const want = new Set(outputs);
  const results = [];
  for (const [index, r] of res.results.entries()) {
    await yieldTurn(); // statistics and inline encodings are full-image passes
    results.push(await promptOutput(r, index, frame, want));
  }
  const W = frame.W, H = frame.H;
  const out: SegmentOutput = {
    result_id: resultId,
    image_id: imageId,
    model: res.modelId,
    width: W,
    height: H,
    results,
    image_assessment: {
      ood_score: res.image.oodScore === null ? null : round(res.image.oodScore),
      ood_threshold: res.image.oodThreshold === null ? null : round(res.image.oodThreshold),
      ood_parts: { embedding: res.image.oodParts.embedding === null ? null : round(res.image.oodParts.embedding), appearance: res.image.oodParts.appearance === null ? null : round(res.image.oodParts.appearance) },
      nearest_training_set: res.image.nearestTrainingSet,
      out_of_distribution: res.image.outOfDistribution,
    },
    calibration: res.calibration,
    ...(res.tta && (res.tta.paraphrases || res.tta.imageTransforms.length) ? { tta: { paraphrases: res.tta.paraphrases, image_transforms: res.tta.imageTransforms } } : {}),
    timings_ms: res.timingsMs,
    cache: { image_features: res.cache.imageFeatures },
    disclaimer: DISCLAIMER,
  };
  return out;
}

/** One prompt's answer: scores, geometry at the size that was sent, trust, how it was drawn, where its mask is, and the inline encodings asked for. */
async function promptOutput(r: SegmentResult['results'][number], index: number, f: ReportFrame, want: Set<'png' | 'rle' | 'polygons'>): Promise<SegmentOutput['results'][number]> {
  const { W, H, w, h, spacing, resultId } = f;
  const stats = f.scaled ? upscaledStats(r.mask, w, h, W, H) : r.stats;
  const mask = want.size && f.scaled ? upscaleMask(r.mask, w, h, W, H) : r.mask;
  const toSent = (b: [number, number, number, number]): [number, number, number, number] => (f.scaled ? [(b[0] * W) / w, (b[1] * H) / h, (b[2] * W) / w, (b[3] * H) / h].map((v) => Math.round(v * 100) / 100) as [number, number, number, number] : b);
  return {
    index,
    prompt: r.prompt,
    structure: r.structure,
    mode: r.mode,
    presence: round(r.presence),
    presence_raw: round(r.presenceRaw),
    mask_threshold: round(r.maskThreshold),
    mask_produced: r.maskProduced,
    predicted_quality: round(r.predictedQuality),
    similarity: round(r.similarity),
    area_px: stats.areaPx,
    area_mm2: spacing ? round(stats.areaPx * spacing.row * spacing.col, 3) : null,
    bbox: stats.bbox,
    centroid: stats.centroid ? ([round(stats.centroid[0], 2), round(stats.centroid[1], 2)] as [number, number]) : null,
    components: stats.components,
    uncertainty: {
      boundary_entropy_bits: round(r.uncertainty.boundaryEntropy),
      uncertain_fraction: round(r.uncertainty.uncertainFraction),
      mean_confidence: round(r.uncertainty.meanConfidence),
      ...(r.uncertainty.ttaDisagreement !== undefined ? { tta_disagreement: round(r.uncertainty.ttaDisagreement) } : {}),
    },
    verdict: r.verdict,
    reasons: r.reasons,
    ...(r.zoomed ? { zoomed: true } : {}),
    ...(r.specialist ? { specialist: r.specialist } : {}),
    ...(r.adapter ? { adapter: r.adapter } : {}),
    ...(r.resolution ? { resolution: r.resolution } : {}),
    ...(r.largestComponentOnly ? { largest_component_only: true } : {}),
    ...(r.refinedBy ? { refined_by: { model: r.refinedBy.model, box: toSent(r.refinedBy.box), predicted_iou: round(r.refinedBy.iou) } } : {}),
    mask_url: `/v1/results/${resultId}/masks/${index}.png`,
    ...(f.dicom ? { dicom_seg_url: `/v1/results/${resultId}/dicom-seg` } : {}),
    mask_uri: `promptseg://results/${resultId}/masks/${index}.png`,
    ...(want.has('png') ? { mask_png_base64: (await maskToPng(mask, W, H)).toString('base64') } : {}),
    ...(want.has('rle') ? { rle: maskToCocoRle(mask, W, H) } : {}),
    ...(want.has('polygons') ? { polygons: maskToPolygons(mask, W, H) as [number, number][][][] } : {}),
  };
}

const round = (v: number, d = 4) => Math.round(v * 10 ** d) / 10 ** d;
