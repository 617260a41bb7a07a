/** The trust verdict: accept, review or reject, with machine-readable reasons and one sentence each. */

export type Verdict = 'accept' | 'review' | 'reject';

export const REASON_CODES = [
  'structure_absent',
  'out_of_distribution',
  'prompt_not_in_vocabulary',
  'low_predicted_quality',
  'high_uncertainty',
  'small_mask',
  'fragmented_mask',
  'prompt_not_text',
  'adapter_not_calibrated',
  'generic_word_unresolved',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

export interface Reason {
  code: ReasonCode;
  severity: 'reject' | 'review';
  message: string;
}

export interface TrustThresholds {
  presence: number;
  quality: number;
  uncertainFraction: number;
  minAreaFraction: number;
  maxComponents: number;
  /** An out-of-distribution image whose score (a ratio to the flag threshold) is above this is rejected; between 1 and this it is flagged for review. */
  oodReject: number;
}

export const DEFAULT_THRESHOLDS: TrustThresholds = {
  presence: 0.5,
  quality: 0.5,
  uncertainFraction: 0.35,
  minAreaFraction: 0.0005,
  maxComponents: 6,
  oodReject: 1,
};

export interface TrustInput {
  structureName?: string;
  inVocabulary: boolean;
  outOfDistribution?: boolean;
  oodScore?: number | null;
  /** true when the prompt's structure is one the model treats as many small parts (nuclei, vessels) */
  manyParts: boolean;
  presence: number;
  quality: number;
  uncertainFraction: number;
  areaFraction: number;
  components: number;
  /** The prompt is markup or script (readPromptText), not the name of anything. */
  notText?: boolean;
  /** Set when a generic word (lesion, tumour...) could not be read as a structure on this image: why. */
  genericUnresolved?: string;
  /** Set when the scores come from something fitted without validation images (an adapter made from a folder without a val split): says what. */
  uncalibrated?: string;
}

/** Combines the scores into a verdict; the worst reason decides. */
export function decideVerdict(t: TrustInput, th: TrustThresholds = DEFAULT_THRESHOLDS): { verdict: Verdict; reasons: Reason[] } {
  const what = t.structureName ?? 'the prompted structure';
  const reasons: Reason[] = [];
  if (t.notText) {
    reasons.push({ code: 'prompt_not_text', severity: 'reject', message: 'The prompt is markup or script, not the name of a structure, so no mask is returned.' });
    return { verdict: 'reject', reasons };
  }
  if (t.genericUnresolved) {
    reasons.push({ code: 'generic_word_unresolved', severity: 'reject', message: t.genericUnresolved });
    return { verdict: 'reject', reasons };
  }
  if (t.presence < th.presence) {
    // "finds no heart", but "does not find the prompted structure"
    const finds = t.structureName && !/^the /i.test(t.structureName) ? `finds no ${t.structureName}` : `does not find ${t.structureName ?? 'the prompted structure'}`;
    reasons.push({ code: 'structure_absent', severity: 'reject', message: `The model ${finds} in this image (presence ${(t.presence * 100).toFixed(0)}%), so no mask is returned.` });
  }
  if (t.outOfDistribution) {
    const far = t.oodScore === null || t.oodScore === undefined || t.oodScore > th.oodReject;
    reasons.push(
      far
        ? { code: 'out_of_distribution', severity: 'reject', message: `The image does not look like any kind of image the model was trained on (${t.oodScore?.toFixed(1) ?? '?'} times the flagging distance), so its output means little here.` }
        : { code: 'out_of_distribution', severity: 'review', message: `The image is less typical than almost all images the model was validated on (${t.oodScore!.toFixed(2)} times the flagging distance); check the result.` },
    );
  }
  if (!t.inVocabulary) {
    reasons.push({ code: 'prompt_not_in_vocabulary', severity: 'review', message: 'The prompt names no structure the model was trained on; treat any mask as a guess.' });
  }
  if (t.presence >= th.presence) {
    if (t.quality < th.quality) {
      reasons.push({ code: 'low_predicted_quality', severity: 'review', message: `The model predicts a low overlap with the true outline (predicted IoU ${t.quality.toFixed(2)}).` });
    }
    if (t.uncertainFraction > th.uncertainFraction) {
      reasons.push({ code: 'high_uncertainty', severity: 'review', message: `Pixel probabilities lie between 25% and 75% over ${(t.uncertainFraction * 100).toFixed(0)}% of the mask.` });
    }
    if (t.areaFraction < th.minAreaFraction) {
      reasons.push({ code: 'small_mask', severity: 'review', message: `The mask covers only ${(t.areaFraction * 100).toFixed(3)}% of the image.` });
    }
    if (!t.manyParts && t.components > th.maxComponents) {
      reasons.push({ code: 'fragmented_mask', severity: 'review', message: `The mask falls apart into ${t.components} separate pieces, which is unusual for ${what}.` });
    }
  }
  if (t.uncalibrated) {
    reasons.push({ code: 'adapter_not_calibrated', severity: 'review', message: `${t.uncalibrated} was made with no validation images, so its probabilities, threshold and presence are not calibrated.` });
  }
  const verdict: Verdict = reasons.some((r) => r.severity === 'reject') ? 'reject' : reasons.length ? 'review' : 'accept';
  return { verdict, reasons };
}
