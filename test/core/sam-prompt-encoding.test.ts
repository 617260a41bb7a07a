import { describe, expect, it } from 'vitest';
import { encodeSamPrompt } from '../../src/core/models/sam-prompt-encoding.js';
import { AppFailure } from '../../src/core/errors.js';

const MAIN = { names: ['image_embeddings', 'image_positional_embeddings', 'input_points', 'input_labels'] };
const BOTH = { names: [...MAIN.names, 'input_boxes'], boxCount: 'nb_boxes' };
const BOXES_ONLY = { names: ['image_embeddings', 'image_positional_embeddings', 'input_boxes'], boxCount: 'nb_boxes' };
const FIXED_BOX = { names: [...MAIN.names, 'input_boxes'], boxCount: 1 };

const failure = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (e instanceof AppFailure) return e.error;
    throw e;
  }
  return undefined;
};

describe('SAM prompt encoding follows the decoder graph\'s declared inputs', () => {
  it('a box goes through input_boxes, scaled to the processor\'s grid, with one padding point (label -10) for the declared point inputs', () => {
    const f = encodeSamPrompt('m', BOTH, { box: [10, 20, 30, 40] }, 2, 0.5);
    expect(Array.from(f.input_boxes!.data)).toEqual([20, 10, 60, 20]);
    expect(f.input_boxes!.dims).toEqual([1, 1, 4]);
    expect(Array.from(f.input_labels!.data)).toEqual([-10n]);
    expect(f.input_points!.dims).toEqual([1, 1, 1, 2]);
  });

  it('no label a SAM prompt encoder types only on its box path (2, 3) is ever produced', () => {
    for (const inputs of [MAIN, BOTH, FIXED_BOX]) {
      for (const pr of [{ box: [1, 1, 5, 5] as [number, number, number, number] }, { points: [[3, 3, 1], [4, 4, 0]] as [number, number, number][] }, { box: [1, 1, 5, 5] as [number, number, number, number], points: [[3, 3, 0]] as [number, number, number][] }]) {
        try {
          const f = encodeSamPrompt('m', inputs, pr, 1, 1);
          for (const l of f.input_labels?.data ?? []) expect([0n, 1n, -10n]).toContain(l);
        } catch (e) {
          expect(e).toBeInstanceOf(AppFailure);
        }
      }
    }
  });

  it('a points-only export refuses a box, naming its inputs and the revision that takes boxes', () => {
    const e = failure(() => encodeSamPrompt('slimsam', MAIN, { box: [1, 1, 5, 5] }, 1, 1, 'regions[2]'));
    expect(e).toMatchObject({ kind: 'invalid_argument', field: 'regions[2].box' });
    expect(e!.message).toMatch(/slimsam cannot take a box: .*input_points, input_labels \(no input_boxes\).*points-and-boxes/);
    const pts = encodeSamPrompt('slimsam', MAIN, { points: [[3, 4, 1]] }, 1, 1);
    expect(pts.input_boxes).toBeUndefined();
    expect(Array.from(pts.input_points!.data)).toEqual([3, 4]);
  });

  it('a boxes-only export refuses points; a fixed box count refuses a prompt without a box; a dynamic one gets zero boxes', () => {
    expect(failure(() => encodeSamPrompt('b', BOXES_ONLY, { points: [[3, 4, 1]] }, 1, 1))?.message).toMatch(/cannot take points/);
    const boxOnly = encodeSamPrompt('b', BOXES_ONLY, { box: [1, 1, 5, 5] }, 1, 1);
    expect(boxOnly.input_points).toBeUndefined();
    expect(failure(() => encodeSamPrompt('f', FIXED_BOX, { points: [[3, 4, 1]] }, 1, 1))?.message).toMatch(/needs a box with every prompt/);
    expect(encodeSamPrompt('d', BOTH, { points: [[3, 4, 1]] }, 1, 1).input_boxes!.dims).toEqual([1, 0, 4]);
  });
});
