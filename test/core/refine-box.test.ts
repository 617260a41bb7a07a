import { describe, expect, it } from 'vitest';
import { boxOf } from '../../src/core/pipeline/segment.js';

/** A 100x80 logit grid: -5 everywhere, +5 over [x1, x2) x [y1, y2) for each rectangle. */
function grid(rects: [number, number, number, number][]) {
  const width = 100, height = 80;
  const data = new Float32Array(width * height).fill(-5);
  for (const [x1, y1, x2, y2] of rects) for (let y = y1; y < y2; y++) for (let x = x1; x < x2; x++) data[y * width + x] = 5;
  return { width, height, data };
}

describe('the box a region model refines from', () => {
  it('with largestComponent, scattered high-scoring patches away from the main region do not stretch the box', () => {
    const g = grid([[20, 20, 50, 60], [90, 2, 93, 5], [2, 75, 4, 78]]);
    expect(boxOf(g, 0, 100, 80, 0)).toEqual([2, 2, 93, 78]);
    expect(boxOf(g, 0, 100, 80, 0, { largestComponent: true })).toEqual([20, 20, 50, 60]);
    // the margin still widens the chosen region's box, clipped to the image
    expect(boxOf(g, 0, 100, 80, 0.03, { largestComponent: true })).toEqual([17, 17, 53, 63]);
    expect(boxOf(grid([]), 0, 100, 80, 0, { largestComponent: true })).toBeUndefined();
  });
});
