/** Pure functions from probabilities and masks to the scalar trust figures reported per prompt. */
import { boundaryBand, unionRuns, type MaskRuns } from '../image/mask-runs.js';

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
 * Summarises a probability map around a thresholded mask, given as runs. The boundary band is the
 * set of pixels whose 4-neighbourhood (repeated `band` times) crosses the mask edge (boundaryBand).
 * `probAt(x, y)` gives pixel (x, y)'s probability; it is asked only for the pixels of the mask and
 * its band, row by row and left to right (the sums add them in that order). `bbox` is the mask's
 * bounding box ([x, y, width, height], null for an empty mask).
 */
export function summariseUncertainty(probAt: (x: number, y: number) => number, runs: MaskRuns, bbox: [number, number, number, number] | null, band = 2): UncertaintySummary {
  if (!bbox) return { boundaryEntropy: 0, uncertainFraction: 0, meanConfidence: 1 }; // no edge, no mask
  const box = { x: bbox[0], y: bbox[1], w: bbox[2], h: bbox[3] };
  const bandRows = boundaryBand(runs, box, band);
  const y0 = Math.max(0, box.y - band), y1 = Math.min(runs.height - 1, box.y + box.h - 1 + band);
  let be = 0, bn = 0, unc = 0, mn = 0, conf = 0, cn = 0;
  for (let y = y0; y <= y1; y++) {
    const m = runs.rows[y], b = bandRows[y];
    if (!m.length && !b.length) continue;
    const read = unionRuns(m, b);
    let im = 0, ib = 0; // the mask's and the band's runs at or right of x
    for (let k = 0; k < read.length; k += 2) {
      for (let x = read[k]; x < read[k + 1]; x++) {
        while (im < m.length && m[im + 1] <= x) im += 2;
        while (ib < b.length && b[ib + 1] <= x) ib += 2;
        const inMask = im < m.length && m[im] <= x, inBand = ib < b.length && b[ib] <= x;
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
  }
  return {
    boundaryEntropy: bn ? be / bn : 0,
    uncertainFraction: mn ? unc / mn : 0,
    meanConfidence: cn ? conf / cn : 1,
  };
}
