import { describe, expect, it } from 'vitest';
import { cellFeatures, gridOf, HEAD_GRID, positionMap, predictGrid, predictRows, trainPixelHead, type FeatureMap } from '../../src/core/adapters/pixel-head.js';
import { cellLabels } from '../../src/core/adapters/support.js';
import { decodeHead, decodeHeads, encodeHead } from '../../src/core/adapters/adapter-file.js';
import { adaptHead, adapterLogits, adapterMask } from '../../src/core/adapters/adapt.js';
import { letterbox } from '../../src/core/image/resize.js';
import { dice, seededRandom } from '../../src/core/stats.js';
import { testContext } from '../helpers/service.js';

const rnd = seededRandom(11);
const map = (name: string, channels: number, size: number): FeatureMap => ({ name, channels, height: size, width: size, data: Float32Array.from({ length: channels * size * size }, () => rnd() * 2 - 1) });

describe('the few-shot pixel head', () => {
  const maps = [map('f1', 3, 256), map('f2', 4, 128), map('f3', 5, 32), map('f5', 2, 8), positionMap(HEAD_GRID)];
  const inputs = maps.map(({ name, channels, height, width }) => ({ name, channels, height, width }));

  it("serves the whole grid (first layer at each map's own resolution, then resampled) exactly as it scores single cells", async () => {
    const n = 300;
    const cells = Array.from({ length: n }, () => Math.floor(rnd() * HEAD_GRID * HEAD_GRID));
    const x = cellFeatures(maps, cells);
    const y = Uint8Array.from(cells, (c) => (c % HEAD_GRID < 20 ? 1 : 0));
    const head = await trainPixelHead(inputs, x, y, { hidden: 8, steps: 20, batch: 32, lr: 1e-2, weightDecay: 0, seed: 1 });
    const grid = predictGrid(head, maps);
    const rows = predictRows(head, cellFeatures(maps, Array.from({ length: HEAD_GRID * HEAD_GRID }, (_, i) => i)), HEAD_GRID * HEAD_GRID);
    let worst = 0;
    for (let q = 0; q < grid.length; q++) worst = Math.max(worst, Math.abs(grid[q] - rows[q]));
    expect(worst).toBeLessThan(1e-3);
    // and the file round trip gives the same head
    const back = decodeHead({ inputs, hidden: 8, ...encodeHead(head) });
    expect(Array.from(predictGrid(back, maps))).toEqual(Array.from(grid));
    const damaged = { inputs, hidden: 8, ...encodeHead(head) };
    damaged.weights = damaged.weights.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    expect(() => decodeHead(damaged)).toThrow(/do not match their sha256/);
    // a record whose grid its maps cannot be read on, or heads on two grids, is refused when read
    const odd = inputs.map((m) => (m.name === 'position' ? { ...m, height: 100, width: 100 } : m));
    expect(() => decodeHead({ inputs: odd, hidden: 8, ...encodeHead(head) })).toThrow(/f1 \[256x256\] does not pool evenly to the head's 100 x 100 grid/);
    const coarse = inputs.map((m) => (m.name === 'position' ? { ...m, height: 64, width: 64 } : m));
    expect(() => decodeHeads([{ inputs, hidden: 8, ...encodeHead(head) }, { inputs: coarse, hidden: 8, ...encodeHead(head) }])).toThrow(/different grids/);
    expect(decodeHeads([{ inputs, hidden: 8, ...encodeHead(head) }])).toHaveLength(1);
  });

  it('refuses feature maps other than those it was fitted on', async () => {
    const x = cellFeatures(maps, [0, 1, 2, 3]);
    const head = await trainPixelHead(inputs, x, Uint8Array.of(0, 1, 0, 1), { hidden: 4, steps: 2, batch: 4, lr: 1e-2, weightDecay: 0, seed: 1 });
    expect(() => predictGrid(head, [map('f1', 3, 256)])).toThrow(/fitted on feature maps f1\[3x256x256\], f2/);
  });

  it('sees a mask on its grid through the letterbox: cells off the image are not valid, shares are the mask fraction', () => {
    const w = 200, h = 100; // letterboxed into 256: 256 x 128, 64 rows of padding above and below
    const mask = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w / 2; x++) mask[y * w + x] = 1;
    const G = 64;
    const { valid, share } = cellLabels(mask, w, h, 256, G);
    expect(valid[0]).toBe(0);
    expect(valid[32 * G + 5]).toBe(1);
    expect(share[32 * G + 5]).toBe(1);
    expect(share[32 * G + 60]).toBe(0);
    expect(valid.reduce((s, v) => s + v, 0)).toBe(32 * G);
    // on a finer grid the same mask covers the same half of the image
    const fine = cellLabels(mask, w, h, 256, 128);
    expect(fine.valid.reduce((s, v) => s + v, 0)).toBe(64 * 128);
    expect(fine.share[64 * 128 + 63]).toBe(1);
    expect(fine.share[64 * 128 + 64]).toBe(0);
  });
});

describe('adaptation on the shipped model', () => {
  it('is deterministic for a seed and differs with another', async () => {
    const ctx = testContext();
    const model = ctx.pipeline.registry.get();
    const img = (cx: number) => {
      const W = 96, H = 80, data = new Uint8Array(W * H * 3), mask = new Uint8Array(W * H);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        const inside = (x - cx) ** 2 + (y - 40) ** 2 < 144;
        data.fill(inside ? 220 : 60 + ((x * 7 + y * 3) % 40), (y * W + x) * 3, (y * W + x) * 3 + 3);
        mask[y * W + x] = inside ? 1 : 0;
      }
      return { name: `disc at ${cx}`, image: { width: W, height: H, data, format: 'raw' }, mask };
    };
    const support = [img(30), img(60)];
    const o = { variants: 1, heads: 2, train: { steps: 25 } };
    const a = await adaptHead(model, support, [], { seed: 3, ...o });
    const b = await adaptHead(model, support, [], { seed: 3, ...o });
    const c = await adaptHead(model, support, [], { seed: 4, ...o });
    expect(a.heads).toHaveLength(2);
    expect(a.heads.map((h) => Array.from(h.w1))).toEqual(b.heads.map((h) => Array.from(h.w1)));
    expect(Array.from(a.heads[0].w1)).not.toEqual(Array.from(c.heads[0].w1));
    expect(Array.from(a.heads[0].w1)).not.toEqual(Array.from(a.heads[1].w1));
    expect(a.calibration.fitted_on).toBe('none');
    expect(a.familiarity.embeddings).toHaveLength(2);
    // the grid is the head's own: a coarser one (as older adapter files hold) is served at the image's size too
    const coarse = await adaptHead(model, support, [], { seed: 3, ...o, grid: 64 });
    expect(gridOf(a.heads[0].inputs)).toBe(HEAD_GRID);
    expect(gridOf(coarse.heads[0].inputs)).toBe(64);
    const maps = model.featureMaps!(await model.encodeImage(letterbox(support[0].image, model.entry.input.size).pixels));
    for (const heads of [a.heads, coarse.heads]) {
      const logits = await adapterLogits(model, heads, maps, 96, 80);
      expect([logits.width, logits.height]).toEqual([96, 80]);
      const m = adapterMask(logits, { fitted_on: 'none', temperature: 1, bias: 0, mask_threshold: 0.5, largest_component: false, presence: { a: 1, b: 0, fitted: false } });
      expect(dice(m, support[0].mask)).toBeGreaterThan(0.5);
    }
    await expect(adapterLogits(model, [a.heads[0], coarse.heads[0]], maps, 96, 80)).rejects.toThrow(/share one grid/);
  }, 60_000);
});
