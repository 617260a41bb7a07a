import { describe, expect, it } from 'vitest';
import { auroc, bootstrapCi, calibration, dice, distanceTransform, iou, percentile, surfaceMetrics } from '../../src/eval/metrics.js';
import { spread } from '../../src/eval/dataset-layout.js';

const W = 12, H = 10;
function rect(x0: number, y0: number, w: number, h: number): Uint8Array {
  const m = new Uint8Array(W * H);
  for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) m[y * W + x] = 1;
  return m;
}
const empty = () => new Uint8Array(W * H);

describe('overlap metrics', () => {
  it('Dice and IoU by hand: 4-pixel square vs 2 of its pixels', () => {
    const a = rect(2, 2, 2, 2), b = rect(2, 2, 2, 1);
    expect(dice(a, b)).toBeCloseTo((2 * 2) / (4 + 2));
    expect(iou(a, b)).toBeCloseTo(2 / 4);
  });
  it('empty on both sides is perfect; empty on one side is zero', () => {
    expect(dice(empty(), empty())).toBe(1);
    expect(iou(empty(), empty())).toBe(1);
    expect(dice(rect(0, 0, 1, 1), empty())).toBe(0);
  });
  it('one-pixel masks: same pixel 1, neighbours 0', () => {
    expect(dice(rect(5, 5, 1, 1), rect(5, 5, 1, 1))).toBe(1);
    expect(dice(rect(5, 5, 1, 1), rect(6, 5, 1, 1))).toBe(0);
  });
});

describe('surface metrics', () => {
  it('distance transform is exact Euclidean, with anisotropic spacing', () => {
    const seed = rect(0, 0, 1, 1);
    const d = distanceTransform(seed, W, H);
    expect(d[0]).toBe(0);
    expect(d[3 * W + 4]).toBeCloseTo(5);
    const da = distanceTransform(seed, W, H, { row: 2, col: 0.5 });
    expect(da[3 * W + 4]).toBeCloseTo(Math.sqrt((3 * 2) ** 2 + (4 * 0.5) ** 2));
  });
  it('one-pixel masks two columns apart: HD95 2 px, NSD 1 at tolerance 2 and 0 at tolerance 1', () => {
    const a = rect(3, 3, 1, 1), b = rect(5, 3, 1, 1);
    expect(surfaceMetrics(a, b, W, H, 2).hd95).toBeCloseTo(2);
    expect(surfaceMetrics(a, b, W, H, 2).nsd).toBe(1);
    expect(surfaceMetrics(a, b, W, H, 1).nsd).toBe(0);
  });
  it('HD95 scales with spacing along the axis of the shift', () => {
    const a = rect(3, 3, 1, 1), b = rect(3, 6, 1, 1);
    expect(surfaceMetrics(a, b, W, H, 1, { row: 0.5, col: 3 }).hd95).toBeCloseTo(1.5);
  });
  it('identical masks: HD95 0 and NSD 1; empty cases', () => {
    expect(surfaceMetrics(rect(1, 1, 4, 4), rect(1, 1, 4, 4), W, H, 0)).toEqual({ hd95: 0, nsd: 1 });
    expect(surfaceMetrics(empty(), empty(), W, H, 1)).toEqual({ hd95: 0, nsd: 1 });
    expect(surfaceMetrics(rect(1, 1, 2, 2), empty(), W, H, 1)).toEqual({ hd95: Infinity, nsd: 0 });
  });
});

describe('ranking, calibration and intervals', () => {
  it('AUROC: perfect, inverted, ties', () => {
    expect(auroc([0.9, 0.8], [0.1, 0.2])).toBe(1);
    expect(auroc([0.1], [0.9])).toBe(0);
    expect(auroc([0.5], [0.5])).toBe(0.5);
    expect(auroc([0.9, 0.4], [0.5, 0.1])).toBe(0.75);
  });
  it('ECE of a calibrated and of an over-confident predictor', () => {
    expect(calibration([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0]).ece).toBeCloseTo(0);
    expect(calibration([0.95, 0.95], [0, 0]).ece).toBeCloseTo(0.95);
  });
  it('percentile interpolates; bootstrap CI is reproducible and contains the mean', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    const v = [0.8, 0.9, 0.85, 0.7, 0.95, 0.75];
    const a = bootstrapCi(v, 500, 3), b = bootstrapCi(v, 500, 3);
    expect(a).toEqual(b);
    expect(a[0]).toBeLessThan(0.825);
    expect(a[1]).toBeGreaterThan(0.825);
  });
});

describe('case selection', () => {
  it('spreads a limited selection over the whole split instead of taking the first cases', () => {
    const cases = Array.from({ length: 10 }, (_, i) => `c${i}`);
    expect(spread(cases, 3)).toEqual(['c0', 'c3', 'c6']);
    expect(spread(cases, 20)).toEqual(cases);
    expect(spread(cases, Infinity)).toEqual(cases);
  });
});
