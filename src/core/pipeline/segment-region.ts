import { fail } from '../errors.js';
import type { RasterImage } from '../image/raster.js';
import type { RegionPrompt } from '../models/model.js';
import { modelKind } from '../models/manifest.js';
import { DEFAULT_THRESHOLDS } from '../trust/verdict.js';
import { contentKey, maskResult, type PipelineContext, type PromptResult, type SegmentResult, type StageName } from './segment.js';

export interface RegionRequest {
  image: RasterImage;
  regions: RegionPrompt[];
  /** A box/point model id; the first installed one when omitted. */
  modelId: string;
  threshold?: number;
}

/** Describes a region prompt in words, for the result's `prompt` field. */
export function describeRegion(r: RegionPrompt): string {
  const parts: string[] = [];
  if (r.box) parts.push(`box [${r.box.join(', ')}]`);
  if (r.points?.length) parts.push(`points ${r.points.map(([x, y, l]) => `(${x}, ${y}${l === 0 ? ', background' : ''})`).join(' ')}`);
  return parts.join(' + ');
}

/** Checks a region prompt against the image; a clear error names the first thing wrong. */
export function checkRegion(r: RegionPrompt, width: number, height: number, at: string): void {
  if (!r.box && !r.points?.length) fail('invalid_argument', `${at}: give a box or at least one point`, at);
  if (r.box) {
    const [x1, y1, x2, y2] = r.box;
    if (!(x2 > x1 && y2 > y1)) fail('invalid_argument', `${at}.box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1`, `${at}.box`);
    if (x1 < 0 || y1 < 0 || x2 > width || y2 > height) fail('invalid_argument', `${at}.box [${r.box.join(', ')}] lies outside the ${width}x${height} image`, `${at}.box`);
  }
  for (const [x, y, l] of r.points ?? []) {
    if (x < 0 || y < 0 || x >= width || y >= height) fail('invalid_argument', `${at}: point (${x}, ${y}) lies outside the ${width}x${height} image`, `${at}.points`);
    if (l !== 0 && l !== 1) fail('invalid_argument', `${at}: a point's label is 1 (on the structure) or 0 (background), not ${l}`, `${at}.points`);
  }
}

/**
 * Box- and point-prompted segmentation with a SAM-family model. The caller asserts the structure
 * is there, so presence is 1; the verdict still reports low predicted IoU, uncertainty, small or
 * fragmented masks with the same reason codes as text prompts.
 */
export async function segmentRegions(ctx: PipelineContext, req: RegionRequest): Promise<SegmentResult> {
  const entry = ctx.registry.entry(req.modelId);
  if (modelKind(entry) !== 'region') fail('invalid_argument', `model "${entry.id}" is prompted by text; segment_region needs a box/point model`, 'model');
  const model = ctx.registry.getRegion(entry.id);
  const threshold = req.threshold ?? 0.5;
  const { image } = req;
  req.regions.forEach((r, i) => checkRegion(r, image.width, image.height, `regions[${i}]`));
  const timings: Record<StageName, number> = { preprocess: 0, encode_image: 0, encode_text: 0, decode_mask: 0, refine: 0, postprocess: 0 };
  const imageSha256 = contentKey(image);
  let t = performance.now();
  await model.load();
  const masks = await model.segmentRegions(image, imageSha256, req.regions);
  timings.decode_mask = performance.now() - t;
  t = performance.now();
  const { width, height } = image;
  // the caller drew the region, so presence is taken as given; the region model's IoU is the quality
  const results: PromptResult[] = [];
  for (const [i, m] of masks.entries()) {
    results.push(
      await maskResult(describeRegion(req.regions[i]), 'whole', m.logits, image, threshold, {
        structure: undefined,
        structureName: 'the outlined structure',
        inVocabulary: true,
        presence: 1,
        presenceRaw: 1,
        quality: m.iou,
        similarity: 0,
        thresholds: DEFAULT_THRESHOLDS,
        temperature: 1,
        ignorePresence: true,
        assessment: { outOfDistribution: false, oodScore: null },
      }),
    );
  }
  timings.postprocess = performance.now() - t;
  for (const k of Object.keys(timings) as StageName[]) timings[k] = Math.round(timings[k] * 100) / 100;
  return {
    modelId: entry.id,
    width,
    height,
    imageSha256,
    results,
    image: { oodScore: null, oodThreshold: null, oodParts: { embedding: null, appearance: null }, nearestTrainingSet: null, outOfDistribution: false, embedding: new Float32Array(0), appearance: new Float32Array(0) },
    calibration: 'none',
    timingsMs: timings,
    cache: { imageFeatures: 'miss' },
  };
}
