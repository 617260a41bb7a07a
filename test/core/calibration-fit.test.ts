import { describe, expect, it } from 'vitest';
import { fitPlatt, fitTemperature, oodScore } from '../../src/core/trust/calibration.js';
import { sigmoid } from '../../src/core/trust/scores.js';
import { seededRandom } from '../../src/eval/metrics.js';

describe('calibration fitting', () => {
  it('recovers the temperature that generated the labels', () => {
    const rnd = seededRandom(5);
    const z: number[] = [], y: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const v = (rnd() - 0.5) * 16;
      z.push(v);
      y.push(rnd() < sigmoid(v / 2.5) ? 1 : 0);
    }
    expect(fitTemperature(z, y)).toBeCloseTo(2.5, 0);
  });

  it('recovers Platt parameters', () => {
    const rnd = seededRandom(9);
    const z: number[] = [], y: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const v = (rnd() - 0.5) * 10;
      z.push(v);
      y.push(rnd() < sigmoid(0.5 * v - 1) ? 1 : 0);
    }
    const { a, b } = fitPlatt(z, y);
    expect(a).toBeCloseTo(0.5, 1);
    expect(b).toBeCloseTo(-1, 1);
  });

  it('scores an embedding far from every modality mean as stranger than one near a mean', () => {
    const ood = { mean: { xray: [0, 0, 0], mri: [5, 5, 5] }, inv_std: { xray: [1, 1, 1], mri: [0.5, 0.5, 0.5] }, radius: { xray: 2, mri: 2 }, threshold: 1 };
    const near = oodScore([0.1, -0.1, 0.2], ood), far = oodScore([20, -20, 9], ood);
    expect(near.nearest).toBe('xray');
    expect(near.score).toBeLessThan(ood.threshold);
    expect(far.score).toBeGreaterThan(ood.threshold);
  });
});
