import { describe, expect, it } from 'vitest';
import { calibratedPresence, fitLogistic, fitPlatt, fitTemperature, LN_NEAR_FLOOR, lnDistanceToSets, oodScore, presenceProbability, type Calibration } from '../../src/core/trust/calibration.js';
import { sigmoid } from '../../src/core/trust/scores.js';
import { dice, seededRandom } from '../../src/eval/metrics.js';
import { chooseLargestComponent, chooseMaskThresholds, chooseTtaCounts, diceByThreshold, fitScores, pickSpecialists, type ValSamples } from '../../src/eval/calibrate.js';
import { keepLargestComponent } from '../../src/core/pipeline/segment.js';

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

  it('recovers logistic weights on two features, and gives Platt scaling on one', () => {
    const rnd = seededRandom(13);
    const x: number[][] = [], y: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const z = (rnd() - 0.5) * 10, d = (rnd() - 0.5) * 4;
      x.push([z, d]);
      y.push(rnd() < sigmoid(0.6 * z - 2.5 * d + 0.3) ? 1 : 0);
    }
    const f = fitLogistic(x, y);
    expect(f.w[0]).toBeCloseTo(0.6, 1);
    expect(f.w[1]).toBeCloseTo(-2.5, 0);
    expect(f.b).toBeCloseTo(0.3, 1);
    const z = x.map((r) => r[0]);
    const one = fitLogistic(z.map((v) => [v]), y), platt = fitPlatt(z, y);
    expect(one.w[0]).toBeCloseTo(platt.a, 8);
    expect(one.b).toBeCloseTo(platt.b, 8);
    // the presence scaling: the distance term lowers presence for an image far from the structure's sets
    const scaling = { a: f.w[0], b: f.b, near: f.w[1] };
    expect(presenceProbability(2, scaling, Math.log(4))).toBeLessThan(presenceProbability(2, scaling, 0));
    expect(presenceProbability(2, { a: 1, b: 0 }, Math.log(4))).toBe(sigmoid(2));
  });

  it("fits a specialist's presence on its logit and its distance to the structure's sets, the model's own on its logit alone", () => {
    const rnd = seededRandom(21);
    const s: ValSamples = { cases: 0, pixelZ: [], pixelY: [], presenceZ: [], presenceY: [], presenceNet: [], presenceNear: [], present: [] };
    for (let i = 0; i < 20000; i++) {
      const net = i % 2 ? 'wide' : '';
      const z = (rnd() - 0.5) * 8, d = (rnd() - 0.3) * 3;
      // the specialist's answers depend on the distance too; the model's on its logit only
      const p = net ? sigmoid(0.5 * z - 3 * d) : sigmoid(0.8 * z - 0.5);
      s.presenceZ.push(z);
      s.presenceNear.push(d);
      s.presenceNet.push(net);
      s.presenceY.push(rnd() < p ? 1 : 0);
    }
    s.present = [{ slug: 'x', net: 'wide', qualityLogit: 0, dice: 0.8, diceAt: [], diceLargest: 0.8, uncertain: 0, recallAt: [] }, { slug: 'y', net: '', qualityLogit: 1, dice: 0.6, diceAt: [], diceLargest: 0.6, uncertain: 0, recallAt: [] }];
    const scores = fitScores(s);
    expect(scores[''].presence.near).toBeUndefined();
    expect(scores[''].presence.a).toBeCloseTo(0.8, 1);
    expect(scores.wide.presence.near).toBeCloseTo(-3, 0);
    expect(scores.wide.presence.a).toBeCloseTo(0.5, 1);
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
    // among some sets only: the nearest of those, however near another lies; none of them held: '' and Infinity
    const among = oodScore([0.1, 0.05, 0], ood, new Set(['mri']));
    expect(among.nearest).toBe('mri');
    expect(among.score).toBeGreaterThan(near.score);
    expect(oodScore([0.1, 0.05, 0], ood, new Set(['ct']))).toEqual({ nearest: '', score: Infinity });
    // ln of that distance ratio to the sets that label a structure: none held, or no embedding, gives 0
    expect(lnDistanceToSets([0.1, 0.05, 0], ood, ['xray'])).toBeCloseTo(Math.log(near.score), 12);
    expect(lnDistanceToSets([0.1, 0.05, 0], ood, ['mri', 'xray'])).toBeCloseTo(Math.log(near.score), 12);
    expect(lnDistanceToSets([0.1, 0.05, 0], ood, ['mri'])).toBeCloseTo(Math.log(among.score), 12);
    expect(lnDistanceToSets([0.1, 0.05, 0], ood, ['ct'])).toBe(0);
    expect(lnDistanceToSets([], ood, ['xray'])).toBe(0);
    // nearer than the fit saw counts as the floor: a copy of a training image gains no more presence
    const onTop = { ...ood, k: 1 };
    expect(lnDistanceToSets([0.2, 0, 0], onTop, ['xray'])).toBe(LN_NEAR_FLOOR);
    // served presence: the answering network's scaling, with the distance where that scaling weighs it
    const cal = { presence: { a: 1, b: 0 }, specialist_scores: { wide: { presence: { a: 1, b: 0, near: -2 }, quality: { a: 1, b: 0 } } }, ood } as unknown as Calibration;
    expect(calibratedPresence(cal, undefined, 1, [20, -20, 9], ['xray'])).toBe(sigmoid(1));
    expect(calibratedPresence(cal, 'polyp', 1, [20, -20, 9], ['xray'])).toBe(sigmoid(1)); // a redrawing specialist: the model's scaling
    expect(calibratedPresence(cal, 'wide', 1, [20, -20, 9], ['xray'])).toBe(presenceProbability(1, { a: 1, b: 0, near: -2 }, lnDistanceToSets([20, -20, 9], ood, ['xray'])));
    expect(calibratedPresence(cal, 'wide', 1, [20, -20, 9], ['xray'])).toBeLessThan(calibratedPresence(cal, 'wide', 1, [0.1, 0.05, 0], ['xray']));
    expect(calibratedPresence(cal, 'wide', 1, [20, -20, 9], undefined)).toBe(sigmoid(1)); // no structure: no distance
  });

  it('computes Dice at every mask threshold in one pass, as thresholding each time would', () => {
    const rnd = seededRandom(3);
    const n = 5000;
    const gt = Uint8Array.from({ length: n }, () => (rnd() < 0.2 ? 1 : 0));
    const prob = Float32Array.from(gt, (g) => Math.min(0.999, Math.max(0, (g ? 0.55 : 0.25) + (rnd() - 0.5) * 0.6)));
    const gsum = gt.reduce((a, v) => a + v, 0);
    const got = diceByThreshold(prob, gt, gsum);
    expect(got).toHaveLength(37);
    for (const [g, t] of [[0, 0.05], [8, 0.25], [18, 0.5], [36, 0.95]] as const) {
      const mask = Uint8Array.from(prob, (p) => (p >= t - 1e-9 ? 1 : 0));
      expect(got[g]).toBeCloseTo(dice(mask, gt), 6);
    }
  });

  it("keeps a structure's Dice-optimal threshold only where it beats 0.5 by half a point, as a calibrated probability", () => {
    // structure "thin": Dice peaks at grid index 8 (raw 0.25), 3 points above index 18 (0.5);
    // structure "flat": best is 0.2 points above 0.5, so it keeps the default
    const curve = (peak: number, top: number, base: number) => Array.from({ length: 37 }, (_, g) => (g === peak ? top : g === 18 ? base : base - 0.05));
    const present = [
      ...Array.from({ length: 4 }, () => ({ slug: 'thin', diceAt: curve(8, 0.78, 0.75) })),
      ...Array.from({ length: 4 }, () => ({ slug: 'flat', diceAt: curve(20, 0.902, 0.9) })),
    ];
    const T = 2;
    const { chosen, gridIndex, gain } = chooseMaskThresholds(present, T);
    expect(Object.keys(chosen)).toEqual(['thin']);
    expect(gridIndex.thin).toBe(8);
    expect(chosen.thin).toBeCloseTo(sigmoid(Math.log(0.25 / 0.75) / T), 4);
    expect(gain.thin).toMatchObject({ n: 4 });
    expect(gain.thin.mean).toBeCloseTo(0.03, 4);
    expect(gain.flat.mean).toBeCloseTo(0.002, 4);
  });

  it('keeps the largest 8-connected component of a mask and clears the rest', () => {
    const w = 12, h = 8;
    const mask = new Uint8Array(w * h);
    const fill = (x0: number, y0: number, x1: number, y1: number) => {
      for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) mask[y * w + x] = 1;
    };
    fill(0, 0, 2, 2); // 9 pixels
    fill(3, 3, 3, 3); // touches the first diagonally: the same component (10 pixels)
    fill(6, 0, 11, 3); // 24 pixels: the largest
    fill(0, 6, 1, 7); // 4 pixels
    expect(keepLargestComponent(mask, w, h)).toBe(2);
    expect(mask.reduce((a, v) => a + v, 0)).toBe(24);
    expect(mask[0 * w + 6]).toBe(1);
    expect(mask[0]).toBe(0);
    expect(keepLargestComponent(mask, w, h)).toBe(0);
  });

  it('keeps the largest component for the structures where it raised val Dice by half a point', () => {
    const rows = [
      ...Array.from({ length: 5 }, (_, i) => ({ slug: 'polyp', dice: 0.8, diceLargest: i < 2 ? 0.82 : 0.8 })), // +0.8 points
      ...Array.from({ length: 5 }, () => ({ slug: 'lungs', dice: 0.97, diceLargest: 0.6 })),
      ...Array.from({ length: 4 }, (_, i) => ({ slug: 'heart', dice: 0.9, diceLargest: i === 0 ? 0.91 : 0.9 })), // +0.25
    ];
    const { chosen, gain } = chooseLargestComponent(rows);
    expect(chosen).toEqual(['polyp']);
    expect(gain.polyp).toEqual({ mean: 0.008, n: 5 });
    expect(gain.lungs.mean).toBeCloseTo(-0.37, 4);
    expect(gain.heart.mean).toBeCloseTo(0.0025, 4);
  });

  it('gives image TTA to the structures it helped by half a point, at the cheapest count near the best', () => {
    // Dice with 0, 2, 4 and 6 copies
    const rows = [
      // 2 copies lose, 4 gain 2 points, 6 gain 1.5: 4
      ...Array.from({ length: 4 }, () => ({ slug: 'flair_abnormality', diceAt: [0.7, 0.69, 0.72, 0.715] })),
      // 2 copies gain 0.4, 4 gain 0.6: 2 is within a quarter point of the best, and cheaper
      ...Array.from({ length: 4 }, () => ({ slug: 'cell_membranes', diceAt: [0.77, 0.774, 0.776, 0.775] })),
      // 2 copies gain 0.3, 4 gain 0.6: 2 is not within a quarter point
      ...Array.from({ length: 4 }, () => ({ slug: 'polyp', diceAt: [0.8, 0.803, 0.806, 0.805] })),
      // 6 gain 0.8, 4 gain 0.65: 4
      ...Array.from({ length: 4 }, () => ({ slug: 'retinal_vessels', diceAt: [0.76, 0.762, 0.7665, 0.768] })),
      // only 6 gain: 6
      ...Array.from({ length: 4 }, () => ({ slug: 'liver', diceAt: [0.7, 0.7, 0.7, 0.71] })),
      // the best gain is under half a point: nothing
      ...Array.from({ length: 4 }, () => ({ slug: 'heart', diceAt: [0.93, 0.932, 0.934, 0.933] })),
      ...Array.from({ length: 4 }, () => ({ slug: 'myocardium', diceAt: [0.85, 0.84, 0.83, 0.82] })),
    ];
    const { chosen, gain } = chooseTtaCounts(rows);
    expect(chosen).toEqual({ cell_membranes: 2, flair_abnormality: 4, liver: 6, polyp: 4, retinal_vessels: 4 });
    expect(gain.flair_abnormality).toEqual({ n: 4, gain: { '2': -0.01, '4': 0.02, '6': 0.015 } });
    expect(gain.myocardium.gain['6']).toBeCloseTo(-0.03, 4);
    expect(Object.keys(gain)).toEqual(['cell_membranes', 'flair_abnormality', 'heart', 'liver', 'myocardium', 'polyp', 'retinal_vessels']);
  });

  it('picks, per structure, the redrawing specialist with the highest mean val Dice change, and names it only where there were several', () => {
    const changes = new Map([
      // one candidate, +1 point: chosen, no name recorded
      ['left_clavicle', new Map([['chest-radiograph-unet', [0.01, 0.01]]])],
      // two candidates: the second gains more
      ['foot_ulcer', new Map([['foot-ulcer', [0.02, 0.04]], ['foot-ulcer-unet', [0.05, 0.07]]])],
      // two candidates that gain the same: the earlier (manifest order)
      ['polyp', new Map([['polyp', [0.01, 0.03]], ['polyp-unet', [0.03, 0.01]]])],
      // two candidates, neither reaches half a point: none chosen, both recorded
      ['left_atrium', new Map([['left-atrium', [0.004, 0.004]], ['left-atrium-unet', [-0.01, 0.0]]])],
      // one candidate under half a point
      ['heart', new Map([['chest-radiograph-unet', [0.002, 0.004]]])],
    ]);
    const { chosen, names, gain } = pickSpecialists(changes);
    expect(chosen).toEqual(['foot_ulcer', 'left_clavicle', 'polyp']);
    expect(names).toEqual({ foot_ulcer: 'foot-ulcer-unet', polyp: 'polyp' });
    expect(gain.foot_ulcer).toEqual({ mean: 0.06, n: 2, by_specialist: { 'foot-ulcer': 0.03, 'foot-ulcer-unet': 0.06 } });
    expect(gain.left_clavicle).toEqual({ mean: 0.01, n: 2 });
    expect(gain.left_atrium).toEqual({ mean: 0.004, n: 2, by_specialist: { 'left-atrium': 0.004, 'left-atrium-unet': -0.005 } });
    expect(gain.heart).toEqual({ mean: 0.003, n: 2 });
    expect(Object.keys(gain)).toEqual(['foot_ulcer', 'heart', 'left_atrium', 'left_clavicle', 'polyp']);
  });
});
