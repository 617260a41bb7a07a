/** Pure functions from probabilities and masks to the scalar trust figures reported per prompt. */

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Binary entropy in bits of a probability. */
export function entropyBits(p: number): number {
  if (p <= 0 || p >= 1) return 0;
  return -(p * Math.log2(p) + (1 - p) * Math.log2(1 - p));
}

export interface UncertaintySummary {
  /** Mean binary entropy (bits) over the pixels within `band` px of the mask boundary. */
  boundaryEntropy: number;
  /** Fraction of predicted-mask pixels whose probability lies in [0.25, 0.75]. */
  uncertainFraction: number;
  /** Mean of max(p, 1-p) over the mask and its boundary band: how sure the pixel calls are. */
  meanConfidence: number;
  /** With test-time augmentation: mean per-pixel standard deviation across paraphrases inside the mask. */
  ttaDisagreement?: number;
}

/**
 * Summarises a probability map around a thresholded mask. The boundary band is the set of
 * pixels whose 4-neighbourhood (repeated `band` times) crosses the mask edge.
 */
export function summariseUncertainty(prob: Float32Array, mask: Uint8Array, width: number, height: number, band = 2): UncertaintySummary {
  const edge = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const v = mask[i];
      if ((x > 0 && mask[i - 1] !== v) || (x < width - 1 && mask[i + 1] !== v) || (y > 0 && mask[i - width] !== v) || (y < height - 1 && mask[i + width] !== v)) edge[i] = 1;
    }
  }
  let grown = edge;
  for (let k = 1; k < band; k++) {
    const next = grown.slice();
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (grown[i]) continue;
        if ((x > 0 && grown[i - 1]) || (x < width - 1 && grown[i + 1]) || (y > 0 && grown[i - width]) || (y < height - 1 && grown[i + width])) next[i] = 1;
      }
    }
    grown = next;
  }
  let be = 0, bn = 0, unc = 0, mn = 0, conf = 0, cn = 0;
  for (let i = 0; i < width * height; i++) {
    const p = prob[i];
    if (grown[i]) {
      be += entropyBits(p);
      bn++;
    }
    if (mask[i]) {
      mn++;
      if (p >= 0.25 && p <= 0.75) unc++;
    }
    if (mask[i] || grown[i]) {
      conf += Math.max(p, 1 - p);
      cn++;
    }
  }
  return {
    boundaryEntropy: bn ? be / bn : 0,
    uncertainFraction: mn ? unc / mn : 0,
    meanConfidence: cn ? conf / cn : 1,
  };
}
