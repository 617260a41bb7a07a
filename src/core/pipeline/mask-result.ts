import { yieldTurn } from './cancel.js';
import type { FloatGrid, RasterImage } from '../image/raster.js';
import { RectTracker, samplerOf, type GridSampler } from '../image/grid-sampler.js';
import { keepLargestComponent, maskStats, type PixelRect } from '../image/mask-stats.js';
import { sigmoid, summariseUncertainty } from '../trust/scores.js';
import { decideVerdict, type TrustThresholds } from '../trust/verdict.js';
import type { Structure } from '../vocabulary.js';
import type { ImageAssessment, PromptResult } from './segment.js';

/** Trust inputs of one mask beyond its pixels. */
export interface MaskTrust {
  structure: Structure | undefined;
  /** Shown in reasons when there is no vocabulary structure. */
  structureName?: string;
  inVocabulary: boolean;
  presence: number;
  presenceRaw: number;
  quality: number;
  similarity: number;
  thresholds: TrustThresholds;
  /** Pixel temperature: probability = sigmoid(logit / temperature). */
  temperature: number;
  /** Draw the mask even when presence is under the threshold (conformal masks, region prompts). */
  ignorePresence: boolean;
  /** The prompt is markup or script, not a name: no mask, rejected. */
  notText?: boolean;
  /** Set when a generic word could not be read as a structure on this image: why (the answer is a rejection). */
  genericUnresolved?: string;
  /** Set when the scores are not calibrated (an adapter made without validation images): what made them. */
  uncalibrated?: string;
  /** Keep only the largest connected component of the mask. */
  largestComponentOnly?: boolean;
  assessment: Pick<ImageAssessment, 'outOfDistribution' | 'oodScore'>;
}

/**
 * The mask of logits at a pixel probability threshold: 1 where sigmoid(logit / temperature) >=
 * threshold. Pixels clearly on one side of the threshold's logit are decided by comparison, those
 * within a hair of it by the probability itself, so the mask is the one the probabilities give.
 * Logits interpolated from a model's grid are thresholded cell by cell without making them all.
 */
export function thresholdMask(logits: FloatGrid, temperature: number, threshold: number, sampler?: GridSampler): { mask: Uint8Array; bounds: PixelRect | null } {
  const cut = Math.log(threshold / (1 - threshold));
  // the margin, a millionth of the cut (relative), is far wider than the rounding of logit x
  // temperature or of an interpolation; too flat a sigmoid near 0 or 1 to trust one: no margin
  const exactOnly = threshold < 1e-6 || threshold > 1 - 1e-6;
  const hi = exactOnly ? Infinity : (cut + 1e-6 * Math.max(1, Math.abs(cut))) * temperature;
  const lo = exactOnly ? -Infinity : (cut - 1e-6 * Math.max(1, Math.abs(cut))) * temperature;
  const decide = (l: number) => (l > hi ? 1 : l < lo ? 0 : sigmoid(l / temperature) >= threshold ? 1 : 0);
  if (sampler) return sampler.threshold(hi, lo, decide);
  const d = logits.data, w = logits.width;
  const mask = new Uint8Array(d.length);
  const b = new RectTracker();
  for (let i = 0; i < d.length; i++) {
    if (!decide(d[i])) continue;
    mask[i] = 1;
    b.add(i % w, (i - (i % w)) / w);
  }
  return { mask, bounds: b.rect() };
}

const probabilities = new WeakMap<FloatGrid, { temperature: number; map: Float32Array }>();

/** A result's pixel probabilities (float32, at the image size): sigmoid(logit / temperature), made when first asked for. */
export function probabilityMap(r: Pick<PromptResult, 'logits' | 'temperature'>): Float32Array {
  const known = probabilities.get(r.logits);
  if (known && known.temperature === r.temperature) return known.map;
  const d = r.logits.data, map = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) map[i] = sigmoid(d[i] / r.temperature);
  probabilities.set(r.logits, { temperature: r.temperature, map });
  return map;
}

/** How far around the mask its boundary band reaches (px): the uncertainty summary's pixels lie within the mask's box widened by it. */
const UNCERTAINTY_BAND = 2;

/** Pixel (x, y)'s value for the pixels of a box widened by `band`, interpolated once for that rectangle. */
function regionReader(sampler: GridSampler, bbox: [number, number, number, number], band: number, width: number, height: number): (x: number, y: number) => number {
  const x0 = Math.max(0, bbox[0] - band), y0 = Math.max(0, bbox[1] - band);
  const r = { x: x0, y: y0, w: Math.min(width - 1, bbox[0] + bbox[2] - 1 + band) - x0 + 1, h: Math.min(height - 1, bbox[1] + bbox[3] - 1 + band) - y0 + 1 };
  const v = sampler.region(r);
  return (x, y) => v[(y - y0) * r.w + x - x0];
}

/** Logits at the image size -> mask, geometry, uncertainty and verdict of one prompt (probabilities only where they are summarised). */
export async function maskResult(prompt: string, mode: 'whole' | 'tiled', logits: FloatGrid, image: RasterImage, threshold: number, t: MaskTrust): Promise<PromptResult> {
  const { width, height } = image;
  // markup is no structure name: answered like nonsense, whatever the model's scores
  const absent = !!t.notText || !!t.genericUnresolved || (t.presence < t.thresholds.presence && !t.ignorePresence);
  // logits interpolated from the model's grid and not yet made are read from the grid where needed
  const sampler = samplerOf(logits);
  const { mask, bounds } = absent ? { mask: new Uint8Array(width * height), bounds: null } : thresholdMask(logits, t.temperature, threshold, sampler);
  // full-image passes, with a turn of the event loop between them: health checks and other
  // clients are answered in between
  await yieldTurn();
  const dropped = t.largestComponentOnly ? keepLargestComponent(mask, width, height) : 0;
  const stats = maskStats(mask, width, height, bounds); // the mask lies within the thresholded bounds (the largest component too)
  await yieldTurn();
  const temperature = t.temperature;
  // (an empty mask reads no pixel: its logits are not made)
  const logitAt = sampler && stats.bbox ? regionReader(sampler, stats.bbox, UNCERTAINTY_BAND, width, height) : (x: number, y: number) => logits.data[y * width + x];
  // the probability as the float32 map holds it
  const uncertainty = summariseUncertainty((x, y) => Math.fround(sigmoid(logitAt(x, y) / temperature)), mask, width, height, stats.bbox, UNCERTAINTY_BAND);
  const { verdict, reasons } = decideVerdict(
    {
      structureName: t.structure?.name ?? t.structureName,
      inVocabulary: t.inVocabulary,
      manyParts: t.structure?.scale === 'tiled',
      presence: t.presence,
      quality: t.quality,
      uncertainFraction: uncertainty.uncertainFraction,
      areaFraction: stats.areaPx / (width * height),
      components: stats.components,
      outOfDistribution: t.assessment.outOfDistribution,
      oodScore: t.assessment.oodScore,
      notText: t.notText,
      uncalibrated: t.uncalibrated,
      genericUnresolved: t.genericUnresolved,
    },
    t.thresholds,
  );
  const s = t.structure;
  return {
    prompt,
    structure: s ? { slug: s.slug, name: s.name, modality: s.modality } : null,
    mode,
    presence: t.presence,
    presenceRaw: t.presenceRaw,
    maskThreshold: threshold,
    maskProduced: stats.areaPx > 0,
    predictedQuality: t.quality,
    similarity: t.similarity,
    stats,
    areaMm2: image.spacing ? stats.areaPx * image.spacing.row * image.spacing.col : null,
    uncertainty,
    verdict,
    reasons,
    mask,
    logits,
    temperature,
    ...(dropped > 0 ? { largestComponentOnly: true } : {}),
  };
}

