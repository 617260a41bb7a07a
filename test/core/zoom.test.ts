import { describe, expect, it } from 'vitest';
import { cropSquare, pasteSquare, zoomSquare } from '../../src/core/pipeline/zoom.js';
import type { RasterImage } from '../../src/core/image/raster.js';

describe('the second, closer look (zoom)', () => {
  it('takes a square around the box with the training margin, inside the image where it fits', () => {
    const sq = zoomSquare([100, 80, 140, 110], 512, 400, 256)!;
    expect(sq.side).toBe(Math.round(40 * 1.75 + 16)); // 8 input pixels at 256 = 16 px of a 512 px image
    expect(sq.left + sq.side / 2).toBeCloseTo(120, 0);
    expect(sq.top + sq.side / 2).toBeCloseTo(95, 0);
    const edge = zoomSquare([0, 0, 30, 30], 512, 400, 256)!;
    expect([edge.left, edge.top]).toEqual([0, 0]); // clamped into the image
    expect(zoomSquare([0, 0, 400, 300], 512, 400, 256)).toBeUndefined(); // already a close look
  });

  it('crops with zero padding beyond the edges and pastes back only where the square meets the image', () => {
    const img: RasterImage = { width: 10, height: 8, data: new Uint8Array(240).fill(9), format: 'png' };
    const sq = { left: -2, top: 5, side: 6 };
    const c = cropSquare(img, sq);
    expect(c.data[0]).toBe(0); // (-2, 5) is outside
    expect(c.data[(0 * 6 + 2) * 3]).toBe(9); // (0, 5) is inside
    expect(c.data[(3 * 6 + 2) * 3]).toBe(0); // (0, 8) is below the image
    const full = { width: 10, height: 8, data: new Float32Array(80).fill(-5) };
    const crop = { width: 6, height: 6, data: new Float32Array(36).fill(3) };
    const out = pasteSquare(full, crop, sq);
    expect(out.data[5 * 10 + 0]).toBe(3);
    expect(out.data[5 * 10 + 4]).toBe(-5);
    expect(out.data[4 * 10 + 0]).toBe(-5);
  });
});
