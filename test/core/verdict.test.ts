import { describe, expect, it } from 'vitest';
import { decideVerdict, DEFAULT_THRESHOLDS, REASON_CODES, type TrustInput } from '../../src/core/trust/verdict.js';
import { summariseUncertainty } from '../../src/core/trust/scores.js';
import { maskStats } from '../../src/core/image/mask-stats.js';
import { MaskRuns } from '../../src/core/image/mask-runs.js';

const good: TrustInput = { structureName: 'heart', inVocabulary: true, manyParts: false, presence: 0.97, quality: 0.9, uncertainFraction: 0.05, areaFraction: 0.1, components: 1 };
const codes = (t: Partial<TrustInput>) => decideVerdict({ ...good, ...t }).reasons.map((r) => r.code);

describe('trust verdict', () => {
  it('accepts a confident, compact, well-predicted mask with no reasons', () => {
    expect(decideVerdict(good)).toEqual({ verdict: 'accept', reasons: [] });
  });

  it('produces every reason code from the input that should trigger it', () => {
    const seen = new Set<string>([
      ...codes({ presence: 0.1 }),
      ...codes({ outOfDistribution: true, oodScore: 9 }),
      ...codes({ inVocabulary: false, structureName: undefined }),
      ...codes({ quality: 0.2 }),
      ...codes({ uncertainFraction: 0.9 }),
      ...codes({ areaFraction: 1e-6 }),
      ...codes({ components: 40 }),
      ...codes({ notText: true }),
      ...codes({ uncalibrated: 'The adapter x' }),
      ...codes({ genericUnresolved: '"lesion" names no finding here' }),
    ]);
    expect([...seen].sort()).toEqual([...REASON_CODES].sort());
  });

  it('rejects absent structures and out-of-distribution images; other reasons ask for review', () => {
    expect(decideVerdict({ ...good, presence: 0.1 }).verdict).toBe('reject');
    expect(decideVerdict({ ...good, outOfDistribution: true }).verdict).toBe('reject');
    expect(decideVerdict({ ...good, quality: 0.2 }).verdict).toBe('review');
    expect(decideVerdict({ ...good, inVocabulary: false }).verdict).toBe('review');
  });

  it('asks for review when an image is only a little past the OOD flag, and rejects it beyond the fitted cut-off', () => {
    const th = { ...DEFAULT_THRESHOLDS, oodReject: 1.4 };
    const near = decideVerdict({ ...good, outOfDistribution: true, oodScore: 1.2 }, th);
    expect(near.verdict).toBe('review');
    expect(near.reasons[0]).toMatchObject({ code: 'out_of_distribution', severity: 'review' });
    expect(decideVerdict({ ...good, outOfDistribution: true, oodScore: 1.9 }, th).verdict).toBe('reject');
  });

  it('does not call many-part structures (nuclei, vessels) fragmented', () => {
    expect(codes({ components: 200, manyParts: true })).not.toContain('fragmented_mask');
  });

  it('uses the thresholds it is given', () => {
    expect(decideVerdict({ ...good, quality: 0.3 }, { ...DEFAULT_THRESHOLDS, quality: 0.2 }).verdict).toBe('accept');
  });

  it('every reason carries a plain sentence', () => {
    for (const r of decideVerdict({ ...good, quality: 0.1, uncertainFraction: 0.8, components: 30, areaFraction: 1e-7 }).reasons) {
      expect(r.message).toMatch(/^[A-Z].+\.$/);
    }
  });
});

describe('uncertainty summary', () => {
  it('measures boundary entropy and the uncertain share of the mask', () => {
    const w = 10, h = 10;
    const prob = new Float32Array(w * h).fill(0.02);
    const mask = new Uint8Array(w * h);
    for (let y = 3; y < 7; y++) for (let x = 3; x < 7; x++) { mask[y * w + x] = 1; prob[y * w + x] = 0.98; }
    const sure = summariseUncertainty((x, y) => prob[y * w + x], MaskRuns.of(mask, w, h), maskStats(mask, w, h).bbox);
    expect(sure.uncertainFraction).toBe(0);
    expect(sure.meanConfidence).toBeGreaterThan(0.95);
    for (let y = 3; y < 7; y++) prob[y * w + 3] = 0.5;
    const unsure = summariseUncertainty((x, y) => prob[y * w + x], MaskRuns.of(mask, w, h), maskStats(mask, w, h).bbox);
    expect(unsure.uncertainFraction).toBeCloseTo(4 / 16);
    expect(unsure.boundaryEntropy).toBeGreaterThan(sure.boundaryEntropy);
  });
});
