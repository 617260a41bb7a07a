import { yieldTurn } from './cancel.js';
import type { FloatGrid, RasterImage } from '../image/raster.js';
import { samplerOf, type GridSampler } from '../image/grid-sampler.js';
import { keepLargestRunComponent, MaskRuns, runStats } from '../image/mask-runs.js';
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
 * threshold, as an array and as runs. Pixels clearly on one side of the threshold's logit are
 * decided by comparison, those within a hair of it by the probability itself, so the mask is the
 * one the probabilities give. Logits interpolated from a model's grid are thresholded cell by cell
 * without making them all.
 */
export function thresholdMask(logits: FloatGrid, temperature: number, threshold: number, sampler?: GridSampler): { mask: Uint8Array; runs: MaskRuns } {
  const cut = Math.log(threshold / (1 - threshold));
  // the margin, a millionth of the cut (relative), is far wider than the rounding of logit x
  // temperature or of an interpolation; too flat a sigmoid near 0 or 1 to trust one: no margin
  const exactOnly = threshold < 1e-6 || threshold > 1 - 1e-6;
  const hi = exactOnly ? Infinity : (cut + 1e-6 * Math.max(1, Math.abs(cut))) * temperature;
  const lo = exactOnly ? -Infinity : (cut - 1e-6 * Math.max(1, Math.abs(cut))) * temperature;
  const decide = (l: number) => (l > hi ? 1 : l < lo ? 0 : sigmoid(l / temperature) >= threshold ? 1 : 0);
  const { width: w, height: h } = logits;
  let runs: MaskRuns;
  if (sampler) runs = sampler.threshold(hi, lo, decide);
  else {
    const d = logits.data, b = MaskRuns.builder(w, h);
    for (let y = 0; y < h; y++) {
      b.beginRow(y);
      for (let x = 0, o = y * w; x < w; x++) if (decide(d[o + x])) b.include(x, x + 1);
    }
    runs = b.done();
  }
  const mask = new Uint8Array(w * h);
  runs.paint(mask);
  return { mask, runs };
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

/** How far around the mask its boundary band reaches (px). */
const UNCERTAINTY_BAND = 2;

/** Logits at the image size -> mask, geometry, uncertainty and verdict of one prompt (probabilities only where they are summarised). */
export async function maskResult(prompt: string, mode: 'whole' | 'tiled', logits: FloatGrid, image: RasterImage, threshold: number, t: MaskTrust): Promise<PromptResult> {
  const { width, height } = image;
  // markup is no structure name: answered like nonsense, whatever the model's scores
  const absent = !!t.notText || !!t.genericUnresolved || (t.presence < t.thresholds.presence && !t.ignorePresence);
  // logits interpolated from the model's grid and not yet made are read from the grid where needed
  const sampler = samplerOf(logits);
  const { mask, runs } = absent ? { mask: new Uint8Array(width * height), runs: MaskRuns.empty(width, height) } : thresholdMask(logits, t.temperature, threshold, sampler);
  // with a turn of the event loop between the passes over the mask: health checks and other
  // clients are answered in between
  await yieldTurn();
  const dropped = t.largestComponentOnly ? keepLargestRunComponent(runs, mask) : 0;
  const stats = runStats(runs);
  await yieldTurn();
  const temperature = t.temperature;
  // logits interpolated from the model's grid are read from the grid, only at the pixels summarised
  const logitAt = sampler ? (x: number, y: number) => sampler.at(x, y) : (x: number, y: number) => logits.data[y * width + x];
  // the probability as the float32 map holds it
  const uncertainty = summariseUncertainty((x, y) => Math.fround(sigmoid(logitAt(x, y) / temperature)), runs, stats.bbox, UNCERTAINTY_BAND);
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

