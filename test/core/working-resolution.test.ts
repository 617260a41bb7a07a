import { describe, expect, it } from 'vitest';
import { maskStats } from '../../src/core/image/mask-stats.js';
import { areaDownscale, upscaledComponents, upscaledStats, upscaleMask, workingImage } from '../../src/core/image/working-resolution.js';
import { seededRandom } from '../../src/eval/metrics.js';

/** A mask of random blobs on a w x h grid. */
function blobs(w: number, h: number, seed: number): Uint8Array {
  const rnd = seededRandom(seed);
  const m = new Uint8Array(w * h);
  for (let k = 0; k < 5; k++) {
    const cx = rnd() * w, cy = rnd() * h, r = 1 + rnd() * Math.min(w, h) * 0.2;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) m[y * w + x] = 1;
  }
  return m;
}

describe('working resolution', () => {
  it('statistics computed at the working size equal those of the upscaled mask, to the pixel', () => {
    for (const [w, h, W, H, seed] of [[37, 23, 100, 61, 1], [64, 64, 64, 64, 2], [50, 40, 213, 171, 3], [9, 7, 10, 8, 4]]) {
      const m = blobs(w, h, seed);
      const up = upscaleMask(m, w, h, W, H);
      const want = maskStats(up, W, H);
      const got = upscaledStats(m, w, h, W, H);
      expect(got.areaPx).toBe(want.areaPx);
      expect(got.bbox).toEqual(want.bbox);
      expect(got.components).toBe(want.components);
      expect(got.largestComponentPx).toBe(want.largestComponentPx);
      expect(got.centroid![0]).toBeCloseTo(want.centroid![0], 6);
      expect(got.centroid![1]).toBeCloseTo(want.centroid![1], 6);
      const parts = upscaledComponents(m, w, h, W, H);
      expect(parts.reduce((n, c) => n + c.areaPx, 0)).toBe(want.areaPx);
      expect(Math.max(...parts.map((c) => c.areaPx))).toBe(want.largestComponentPx);
    }
  });

  it('a large image is worked on as a resampled copy under the pixel budget, with spacing and DICOM values scaled', async () => {
    const W = 1000, H = 600;
    const data = new Uint8Array(W * H * 3);
    for (let i = 0; i < W * H; i++) data.fill(i % W < 500 ? 200 : 20, i * 3, i * 3 + 3);
    const values = new Float32Array(W * H).map((_, i) => (i % W < 500 ? 1000 : -1000));
    const work = await workingImage({ width: W, height: H, data, format: 'dicom', spacing: { row: 0.5, col: 0.25 }, dicom: { kind: 'dicom', modality: 'CT', photometric: 'MONOCHROME2', monochrome1: false, frames: 1, frame: 0, transferSyntax: '1.2.840.10008.1.2.1', values } }, 100_000);
    expect(work.width * work.height).toBeLessThanOrEqual(100_000);
    expect(work.width / work.height).toBeCloseTo(W / H, 1);
    expect(work.original).toEqual({ width: W, height: H, spacing: { row: 0.5, col: 0.25 } });
    expect(work.spacing!.col * work.width).toBeCloseTo(0.25 * W, 6);
    expect(work.spacing!.row * work.height).toBeCloseTo(0.5 * H, 6);
    expect(work.dicom!.values!.length).toBe(work.width * work.height);
    expect(work.data[0]).toBe(200);
    expect(work.data[(work.width - 1) * 3]).toBe(20);
    expect(work.dicom!.values![0]).toBeCloseTo(1000, 3);
    const small = { width: 100, height: 100, data: new Uint8Array(30000), format: 'png' };
    expect(await workingImage(small, 100_000)).toBe(small);
  });

  it('area averaging keeps the mean of the image', async () => {
    const rnd = seededRandom(9);
    const src = Float32Array.from({ length: 97 * 61 }, () => rnd() * 100);
    const out = await areaDownscale(src, 97, 61, 1, 30, 20, (n) => new Float32Array(n));
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(out)).toBeCloseTo(mean(src), 3);
  });
});
