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
 * pixels whose 4-neighbourhood (repeated `band` times) crosses the mask edge. `probAt(x, y)` gives
 * pixel (x, y)'s probability; it is asked only for the pixels of the mask and its band, which lie in
 * the mask's bounding box `bbox` ([x, y, width, height], null for an empty mask) widened by `band`,
 * row by row.
 */
export function summariseUncertainty(probAt: (x: number, y: number) => number, mask: Uint8Array, width: number, height: number, bbox: [number, number, number, number] | null, band = 2): UncertaintySummary {
  if (!bbox) return { boundaryEntropy: 0, uncertainFraction: 0, meanConfidence: 1 }; // no edge, no mask
  const x0 = Math.max(0, bbox[0] - band), y0 = Math.max(0, bbox[1] - band);
  const x1 = Math.min(width - 1, bbox[0] + bbox[2] - 1 + band), y1 = Math.min(height - 1, bbox[1] + bbox[3] - 1 + band);
  const rw = x1 - x0 + 1, rh = y1 - y0 + 1;
  // the band, in the rectangle's own coordinates: nothing outside it is within `band` of the mask
  let grown = new Uint8Array(rw * rh);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const i = y * width + x;
      const v = mask[i];
      if ((x > 0 && mask[i - 1] !== v) || (x < width - 1 && mask[i + 1] !== v) || (y > 0 && mask[i - width] !== v) || (y < height - 1 && mask[i + width] !== v)) grown[(y - y0) * rw + x - x0] = 1;
    }
  }
  for (let k = 1; k < band; k++) {
    const next = grown.slice();
    for (let y = 0; y < rh; y++) {
      for (let x = 0; x < rw; x++) {
        const i = y * rw + x;
        if (grown[i]) continue;
        if ((x > 0 && grown[i - 1]) || (x < rw - 1 && grown[i + 1]) || (y > 0 && grown[i - rw]) || (y < rh - 1 && grown[i + rw])) next[i] = 1;
      }
    }
    grown = next;
  }
  let be = 0, bn = 0, unc = 0, mn = 0, conf = 0, cn = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const i = y * width + x;
      const inBand = grown[(y - y0) * rw + x - x0], inMask = mask[i];
      if (!inBand && !inMask) continue;
      const p = probAt(x, y);
      if (inBand) {
        be += entropyBits(p);
        bn++;
      }
      if (inMask) {
        mn++;
        if (p >= 0.25 && p <= 0.75) unc++;
      }
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
