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

  it('scores an embedding far from every training set as stranger than one among them (k-NN)', () => {
    const enc = (vs: number[][]) => Buffer.from(Float32Array.from(vs.flat()).buffer).toString('base64');
    const ood = {
      mean: [0, 0, 0], std: [1, 1, 1], k: 2,
      bank: { xray: enc([[0, 0, 0], [0.2, 0, 0], [0, 0.2, 0]]), mri: enc([[5, 5, 5], [5.2, 5, 5], [5, 5.2, 5]]) },
      radius: { xray: 0.2, mri: 0.2 }, threshold: 1.5,
    };
    const near = oodScore([0.1, 0.05, 0], ood), far = oodScore([20, -20, 9], ood);
    expect(near.nearest).toBe('xray');
    expect(near.score).toBeLessThan(ood.threshold);
    expect(far.score).toBeGreaterThan(ood.threshold);
    expect(oodScore([5.1, 5, 5], ood).nearest).toBe('mri');
  });
});
