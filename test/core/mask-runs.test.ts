import { describe, expect, it } from 'vitest';
import { GridSampler } from '../../src/core/image/grid-sampler.js';
import { keepLargestRunComponent, MaskRuns, runStats } from '../../src/core/image/mask-runs.js';
import { components, keepLargestComponent, maskStats, type MaskStats } from '../../src/core/image/mask-stats.js';
import { seededRandom } from '../../src/core/stats.js';
import { entropyBits, summariseUncertainty } from '../../src/core/trust/scores.js';

/** A random mask: blobs of random size and count over scattered single pixels (density 0..1), touching the borders as often as not. */
function randomMask(rnd: () => number, w: number, h: number): Uint8Array {
  const m = new Uint8Array(w * h);
  const blobs = Math.floor(rnd() * 5), scatter = rnd() < 0.5 ? rnd() * 0.3 : 0;
  for (let b = 0; b < blobs; b++) {
    const cx = rnd() * w, cy = rnd() * h, r = 1 + rnd() * Math.max(w, h) * 0.4;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) m[y * w + x] = 1;
  }
  for (let i = 0; i < m.length; i++) if (rnd() < scatter) m[i] ^= 1;
  return m;
}

/** A mask's geometry pixel by pixel, its components by flood fill (components()). */
function statsByPixels(m: Uint8Array, w: number, h: number): MaskStats {
  let area = 0, sx = 0, sy = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!m[y * w + x]) continue;
      area++; sx += x; sy += y;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (!area) return { areaPx: 0, bbox: null, centroid: null, components: 0, largestComponentPx: 0 };
  const c = components(m, w, h);
  return { areaPx: area, bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1], centroid: [sx / area, sy / area], components: c.count, largestComponentPx: Math.max(...c.sizes) };
}

/** The mask with only its largest flood-filled component (the lowest label among equals: the one met first), and how many were dropped. */
function largestByFloodFill(m: Uint8Array, w: number, h: number): { mask: Uint8Array; dropped: number } {
  const c = components(m, w, h);
  if (c.count <= 1) return { mask: m.slice(), dropped: 0 };
  let best = 0;
  for (let k = 1; k < c.count; k++) if (c.sizes[k] > c.sizes[best]) best = k;
  return { mask: Uint8Array.from(m, (v, i) => (v && c.labels[i] === best + 1 ? 1 : 0)), dropped: c.count - 1 };
}

/** The uncertainty summary by its definition, pixel by pixel: the band is the pixels whose 4-neighbourhood crosses the mask edge, grown band - 1 times, within the box widened by band. */
function summaryByDefinition(prob: Float32Array, mask: Uint8Array, w: number, h: number, band: number) {
  const s = statsByPixels(mask, w, h);
  if (!s.bbox) return { boundaryEntropy: 0, uncertainFraction: 0, meanConfidence: 1 };
  const [bx, by, bw, bh] = s.bbox;
  const x0 = Math.max(0, bx - band), y0 = Math.max(0, by - band), x1 = Math.min(w - 1, bx + bw - 1 + band), y1 = Math.min(h - 1, by + bh - 1 + band);
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= w || y >= h ? undefined : mask[y * w + x]);
  let grown = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = mask[y * w + x];
      if ([at(x - 1, y), at(x + 1, y), at(x, y - 1), at(x, y + 1)].some((n) => n !== undefined && n !== v)) grown[y * w + x] = 1;
    }
  }
  for (let k = 1; k < band; k++) {
    const next = grown.slice();
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ([[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]].some(([a, b]) => a >= 0 && b >= 0 && a < w && b < h && grown[b * w + a])) next[y * w + x] = 1;
    grown = next;
  }
  let be = 0, bn = 0, unc = 0, mn = 0, conf = 0, cn = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const i = y * w + x;
      if (!grown[i] && !mask[i]) continue;
      const p = prob[i];
      if (grown[i]) { be += entropyBits(p); bn++; }
      if (mask[i]) { mn++; if (p >= 0.25 && p <= 0.75) unc++; }
      conf += Math.max(p, 1 - p);
      cn++;
    }
  }
  return { boundaryEntropy: bn ? be / bn : 0, uncertainFraction: mn ? unc / mn : 0, meanConfidence: cn ? conf / cn : 1 };
}

describe('masks as runs', () => {
  it('give the geometry and components that the pixel-by-pixel statistics give, on random masks', () => {
    const rnd = seededRandom(21);
    for (let t = 0; t < 300; t++) {
      const w = 1 + Math.floor(rnd() * 60), h = 1 + Math.floor(rnd() * 60);
      const m = randomMask(rnd, w, h);
      const runs = MaskRuns.of(m, w, h);
      expect(runStats(runs)).toEqual(statsByPixels(m, w, h));
      const painted = new Uint8Array(w * h);
      runs.paint(painted);
      expect(painted).toEqual(m);
    }
  });

  it('keep the same largest component as the flood fill, ties going to the component met first', () => {
    const rnd = seededRandom(22);
    for (let t = 0; t < 300; t++) {
      const w = 1 + Math.floor(rnd() * 50), h = 1 + Math.floor(rnd() * 50);
      const m = randomMask(rnd, w, h);
      const byFill = largestByFloodFill(m, w, h), byRuns = m.slice();
      const runs = MaskRuns.of(byRuns, w, h);
      expect(keepLargestRunComponent(runs, byRuns)).toBe(byFill.dropped);
      expect(byRuns).toEqual(byFill.mask);
      expect(runStats(runs)).toEqual(statsByPixels(byFill.mask, w, h));
      // the mask-array form the calibration and adapters call
      const inPlace = m.slice();
      expect(keepLargestComponent(inPlace, w, h)).toBe(byFill.dropped);
      expect(inPlace).toEqual(byFill.mask);
    }
    // two components of 2 pixels each: the one whose first pixel comes first in raster order stays
    const w = 5, two = Uint8Array.from([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    const runs = MaskRuns.of(two, w, 3);
    expect(keepLargestRunComponent(runs, two)).toBe(1);
    expect([...two]).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('summarise uncertainty over the mask and its boundary band exactly as the definition, pixel by pixel', () => {
    const rnd = seededRandom(23);
    for (let t = 0; t < 200; t++) {
      const w = 1 + Math.floor(rnd() * 40), h = 1 + Math.floor(rnd() * 40), band = 1 + Math.floor(rnd() * 3);
      const m = randomMask(rnd, w, h);
      const prob = Float32Array.from({ length: w * h }, () => rnd());
      const asked: number[] = [];
      const got = summariseUncertainty((x, y) => (asked.push(y * w + x), prob[y * w + x]), MaskRuns.of(m, w, h), maskStats(m, w, h).bbox, band);
      // the same sums in the same order: equal to the last bit
      expect(got).toEqual(summaryByDefinition(prob, m, w, h, band));
      // pixels are read once each, row by row and left to right
      expect(asked).toEqual([...asked].sort((a, b) => a - b));
      expect(new Set(asked).size).toBe(asked.length);
    }
  });

  it('threshold a grid interpolated onto an image to the mask that thresholding every interpolated value gives', () => {
    const rnd = seededRandom(24);
    for (let t = 0; t < 100; t++) {
      const G = 2 + Math.floor(rnd() * 20), W = 1 + Math.floor(rnd() * 90), H = 1 + Math.floor(rnd() * 90);
      // smooth logits with plateaus (whole cells above or below the cut) and some exactly at it
      const data = Float32Array.from({ length: G * G }, (_, i) => {
        const x = i % G, y = Math.floor(i / G);
        const v = Math.round(4 * Math.sin(x / 3 + t) * Math.cos(y / 4));
        return rnd() < 0.1 ? 0 : v;
      });
      const span = G * (1 + Math.floor(rnd() * 4));
      const place = { left: rnd() * 3, top: rnd() * 3, scaleX: (span - 6) / W, scaleY: (span - 6) / H };
      const sampler = new GridSampler({ grid: { width: G, height: G, data }, gridSpan: span, place }, W, H);
      const cut = rnd() < 0.3 ? 0 : rnd() * 4 - 2;
      const values = sampler.values();
      const want = Uint8Array.from(values, (v) => (v >= cut ? 1 : 0));
      const runs = sampler.threshold(cut + 1e-6, cut - 1e-6, (v) => (v >= cut ? 1 : 0));
      const got = new Uint8Array(W * H);
      runs.paint(got);
      expect(got).toEqual(want);
      expect(runStats(runs)).toEqual(statsByPixels(want, W, H));
    }
  });
});
