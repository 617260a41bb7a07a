import { z } from 'zod';

/** The mask threshold a request may give (segment, compare_prompts, segment_volume): left out, each structure gets the one fitted for it on val. */
export const MaskThresholdSchema = z
  .number()
  .gt(0)
  .lt(1)
  .optional()
  .describe("Pixel probability at or above which a pixel is in the mask. Default: the threshold fitted for the structure on val where the model's calibration has one (mask_threshold in each result says which was used), else 0.5.");

export const ReasonSchema = z.object({
  code: z.string().describe('Machine-readable reason code, e.g. structure_absent, low_predicted_quality.'),
  severity: z.enum(['reject', 'review']),
  message: z.string(),
});

export const PromptResultSchema = z.object({
  index: z.number().int(),
  prompt: z.string(),
  structure: z.object({ slug: z.string(), name: z.string(), modality: z.string() }).nullable().describe('The vocabulary structure the prompt names, or null when it names none.'),
  mode: z.enum(['whole', 'tiled']).describe('whole: one letterboxed pass; tiled: native-resolution tiles for thin structures.'),
  presence: z.number().describe('Probability that the structure is in the image at all (calibrated on the val split when the model has a calibration).'),
  presence_raw: z.number().describe("The model's presence output before calibration."),
  mask_threshold: z.number().describe('Pixel probability threshold used for this mask (a conformal threshold when conformal_recall was asked).'),
  mask_produced: z.boolean(),
  predicted_quality: z.number().describe("The model's own estimate of the mask's IoU with the truth."),
  similarity: z.number().describe('Cosine similarity of the prompt embedding and the mask-pooled image embedding.'),
  area_px: z.number().int(),
  area_mm2: z.number().nullable(),
  bbox: z.tuple([z.number(), z.number(), z.number(), z.number()]).nullable().describe('[x, y, width, height] in pixels.'),
  centroid: z.tuple([z.number(), z.number()]).nullable().describe('[x, y] in pixels.'),
  components: z.number().int(),
  uncertainty: z.object({
    boundary_entropy_bits: z.number(),
    uncertain_fraction: z.number(),
    mean_confidence: z.number(),
    tta_disagreement: z.number().optional().describe('With tta > 0: mean per-pixel standard deviation of the probability across paraphrases, inside the mask.'),
  }),
  verdict: z.enum(['accept', 'review', 'reject']),
  reasons: z.array(ReasonSchema),
  zoomed: z.boolean().optional().describe('Set when the mask comes from the second, closer look at a crop around the first mask.'),
  specialist: z.string().optional().describe("Set when the model's specialist of this name drew the mask (segment's specialist option; presence and quality are still the first look's), or answered for the structure altogether: a network that serves structures the generalist was not trained on, and also those it was, on images nearest the training sets it serves (lungs on COVID-19 radiographs); describe_model lists them."),
  adapter: z.string().optional().describe('Set when an adapter (a structure taught from labelled images: adapt_structure) drew the mask: its id. presence is then the adapter\'s highest pixel probability, calibrated on its validation images where they had images without the structure, and predicted_quality the Dice its calibrated probabilities expect for the mask (2 x the probability summed over the mask / (the probability summed over the image + the mask area)); out_of_distribution then says how unlike the images it was taught on the image is.'),
  resolution: z
    .object({
      word: z.string(),
      structure: z.string().nullable(),
      code: z.enum(['generic_word_resolved', 'generic_word_unresolved']),
      basis: z.enum(['model_presence', 'nearest_training_set']).nullable().describe('model_presence: the model found that finding (the highest presence of those the word can mean); nearest_training_set: it found none, and the finding of the kind of image this looks most like was taken.'),
      nearest_training_set: z.string().nullable(),
      candidates: z.record(z.string(), z.number()).describe("The model's presence for each finding the word can mean, on this image."),
      message: z.string(),
    })
    .optional()
    .describe('Set when the prompt was a generic word (lesion, tumour...): which structure it was read as on this image and why (generic_words).'),
  largest_component_only: z.boolean().optional().describe('Set when smaller connected components were dropped from the mask, keeping the largest (largest_component).'),
  refined_by: z
    .object({ model: z.string(), box: z.tuple([z.number(), z.number(), z.number(), z.number()]), predicted_iou: z.number() })
    .optional()
    .describe('Set when a box/point model redrew the mask from the box [x1, y1, x2, y2] of the text model\'s mask; predicted_quality is then its predicted IoU.'),
  mask_url: z.string().describe('Where the full-resolution mask PNG can be fetched over HTTP.'),
  mask_uri: z.string().describe('The MCP resource URI of the mask PNG.'),
  dicom_seg_url: z.string().optional().describe('For DICOM input: a DICOM Segmentation of all produced masks referencing the source image (?anonymize=true strips patient identifiers).'),
  mask_png_base64: z.string().optional(),
  rle: z.object({ size: z.tuple([z.number(), z.number()]), counts: z.array(z.number()) }).optional().describe('COCO uncompressed RLE (column-major), size [height, width].'),
  polygons: z.array(z.array(z.array(z.tuple([z.number(), z.number()])))).optional().describe('MultiPolygon-like outer rings in pixel-corner coordinates.'),
});

export const SegmentOutputSchema = z.object({
  result_id: z.string(),
  image_id: z.string().describe('Pass as image.image_id to prompt this image again without resending it.'),
  model: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  results: z.array(PromptResultSchema),
  image_assessment: z.object({
    ood_score: z.number().nullable().describe('How unlike the training images this image is, as a ratio to the flag threshold (above ood_threshold = flagged): the larger of the model-embedding and appearance-statistics k-NN distances; null when the model has no calibration.'),
    ood_threshold: z.number().nullable(),
    ood_parts: z.object({ embedding: z.number().nullable(), appearance: z.number().nullable() }).optional().describe('The two ratios behind ood_score.'),
    nearest_training_set: z.string().nullable(),
    out_of_distribution: z.boolean(),
  }),
  tta: z.object({ paraphrases: z.number().int(), image_transforms: z.array(z.string()) }).optional().describe('The test-time augmentation that ran (when asked for).'),
  calibration: z.enum(['fitted', 'stale', 'none']).describe("Whether fitted calibration (temperature, presence, quality, thresholds) was applied; stale: the model's calibration was fitted on other model files and is not applied until `promptseg calibrate` is run again."),
  overlay_png_base64: z.string().optional(),
  timings_ms: z.record(z.string(), z.number()),
  cache: z.object({ image_features: z.enum(['hit', 'miss', 'partial']) }),
  disclaimer: z.string(),
});
export type SegmentOutput = z.infer<typeof SegmentOutputSchema>;

export const DISCLAIMER = 'Research use only; not for clinical decisions.';

/** [row, column] pixel spacing in mm: positive and at most 1 m, so that areas stay finite numbers. */
export const PixelSpacingSchema = z
  .tuple([z.number().positive().max(1000, 'a pixel spacing over 1000 mm is not a medical image'), z.number().positive().max(1000, 'a pixel spacing over 1000 mm is not a medical image')])
  .optional();

export const AdapterSummarySchema = z.object({
  id: z.string(),
  structure: z.string().describe('The structure slug.'),
  name: z.string(),
  synonyms: z.array(z.string()),
  modality: z.string().nullable(),
  model: z.string().describe('The model it adapts.'),
  k: z.number().int().describe('Labelled images it was fitted on.'),
  seed: z.number().int(),
  source: z.object({ dataset: z.string(), sha256: z.string().describe('sha256 of the labelled folder it was made from.') }),
  created_at: z.string(),
  calibrated_on: z.enum(['validation', 'none']).describe('validation: probabilities, threshold and presence fitted on the folder\'s val images; none: there were none.'),
  validation: z.object({ images: z.number().int(), dice_mean: z.number(), dice_ci95: z.tuple([z.number(), z.number()]) }).nullable().describe('Dice on the validation images (those that show the structure), with its 95% bootstrap interval.'),
});

export const JobSchema = z.object({
  id: z.string(),
  kind: z.enum(['adapt']),
  status: z.enum(['queued', 'running', 'succeeded', 'failed']),
  progress: z.object({ done: z.number(), total: z.number(), message: z.string() }),
  created_at: z.string(),
  finished_at: z.string().optional(),
  result: z.record(z.string(), z.unknown()).optional().describe('For an adaptation: { adapter } as list_adapters shows it.'),
  error: z.object({ kind: z.string(), message: z.string(), field: z.string().optional() }).optional(),
});
