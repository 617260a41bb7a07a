import { yieldTurn } from './cancel.js';
import type { FloatGrid, RasterImage } from '../image/raster.js';
import { keepLargestComponent, maskStats } from '../image/mask-stats.js';
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

/** Logits at the image size -> probability, mask, geometry, uncertainty and verdict of one prompt. */
export async function maskResult(prompt: string, mode: 'whole' | 'tiled', logits: FloatGrid, image: RasterImage, threshold: number, t: MaskTrust): Promise<PromptResult> {
  const { width, height } = image;
  const probability = new Float32Array(width * height);
  const mask = new Uint8Array(width * height);
  // markup is no structure name: answered like nonsense, whatever the model's scores
  const absent = !!t.notText || !!t.genericUnresolved || (t.presence < t.thresholds.presence && !t.ignorePresence);
  for (let i = 0; i < probability.length; i++) {
    const p = sigmoid(logits.data[i] / t.temperature);
    probability[i] = p;
    if (!absent && p >= threshold) mask[i] = 1;
  }
  // three full-image passes, with a turn of the event loop between them (each is about 100 ms on a
  // 4-megapixel working image): health checks and other clients are answered in between
  await yieldTurn();
  const dropped = t.largestComponentOnly ? keepLargestComponent(mask, width, height) : 0;
  const stats = maskStats(mask, width, height);
  await yieldTurn();
  const uncertainty = summariseUncertainty(probability, mask, width, height);
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
    probability,
    ...(dropped > 0 ? { largestComponentOnly: true } : {}),
  };
}

