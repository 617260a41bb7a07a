import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/core/image/decode.js';
import { segment } from '../../src/core/pipeline/segment.js';
import { dice } from '../../src/eval/metrics.js';
import { disposeServiceContext } from '../../src/service/context.js';
import { seededRandom } from '../../src/eval/metrics.js';
import { SHARED_DATA, sharedMissing } from '../helpers/project.js';
import { testContext } from '../helpers/service.js';
import { greyPng } from '../helpers/fixtures.js';

const ctx = testContext();
afterAll(() => disposeServiceContext(ctx));
const limits = { maxPixels: 40_000_000 };

async function sharedCase(ds: string, c: string, ext = '.png') {
  const image = await decodeImage(readFileSync(path.join(SHARED_DATA, ds, 'images', c + ext)), limits);
  const mask = async (slug: string) => {
    const { data } = await sharp(path.join(SHARED_DATA, ds, 'masks', slug, c + '.png')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    return Uint8Array.from(data, (v) => (v > 127 ? 1 : 0));
  };
  return { image, mask };
}
const testCases = (ds: string, n: number): string[] => (JSON.parse(readFileSync(path.join(SHARED_DATA, ds, 'splits.json'), 'utf8')) as { test: string[] }).test.slice(0, n);

describe.skipIf(!!sharedMissing)(`built-in model on shared test cases${sharedMissing ? ` (skipped: ${sharedMissing})` : ''}`, () => {
  it("puts the patient's left lung on the image's right of a PA chest X-ray, and the right lung on the left", async () => {
    for (const c of testCases('jsrt_scr_cxr', 3)) {
      const { image } = await sharedCase('jsrt_scr_cxr', c);
      const r = await segment(ctx.pipeline, { image, prompts: ['left lung', 'right lung'] });
      const [left, right] = r.results;
      expect(left.maskProduced && right.maskProduced).toBe(true);
      expect(left.stats.centroid![0]).toBeGreaterThan(image.width / 2);
      expect(right.stats.centroid![0]).toBeLessThan(image.width / 2);
    }
  });

  it('segments lungs and heart on chest X-rays close to the expert masks', async () => {
    for (const c of testCases('jsrt_scr_cxr', 3)) {
      const { image, mask } = await sharedCase('jsrt_scr_cxr', c);
      const r = await segment(ctx.pipeline, { image, prompts: ['lungs', 'heart'] });
      expect(dice(r.results[0].mask, await mask('lungs'))).toBeGreaterThan(0.85);
      expect(dice(r.results[1].mask, await mask('heart'))).toBeGreaterThan(0.7);
    }
  });

  it('rejects absent structures and nonsense with an empty mask', async () => {
    const absent = ['liver', 'fetal head', 'polyp', 'retinal blood vessels', 'banana', 'hello world', 'asdf'];
    for (const c of testCases('jsrt_scr_cxr', 2)) {
      const { image } = await sharedCase('jsrt_scr_cxr', c);
      const r = await segment(ctx.pipeline, { image, prompts: absent });
      for (const res of r.results) {
        expect(res.maskProduced, `"${res.prompt}" on ${c}`).toBe(false);
        expect(res.verdict).toBe('reject');
        expect(res.reasons.map((x) => x.code)).toContain('structure_absent');
      }
    }
  });

  it('gives identical outputs for identical inputs', async () => {
    const { image } = await sharedCase('hc18_fetal_head_us', testCases('hc18_fetal_head_us', 1)[0], '.jpg');
    const a = await segment(ctx.pipeline, { image, prompts: ['fetal head'] });
    ctx.pipeline.featureCache.clear();
    ctx.pipeline.textCache.clear();
    const b = await segment(ctx.pipeline, { image, prompts: ['fetal head'] });
    expect(b.results[0].presence).toBe(a.results[0].presence);
    expect(Buffer.from(b.results[0].mask).equals(Buffer.from(a.results[0].mask))).toBe(true);
    expect(Buffer.from(b.results[0].probability.buffer).equals(Buffer.from(a.results[0].probability.buffer))).toBe(true);
  });
});

describe('out-of-distribution images made by code', () => {
  const cal = () => ctx.pipeline.registry.entry('promptseg-builtin').calibration;
  // Measured: 17 of these 20 flagged (85%) with the k-NN score and the threshold fitted on val; the
  // 95% target of the trust issue is not met yet, so this guards the level reached, not the goal.
  it.skipIf(!cal())('flags most non-medical images made by code (noise, stripes, checkerboards, scenes with text) as out of distribution', async () => {
    const rnd = seededRandom(3);
    const makers: (() => Promise<Buffer>)[] = [];
    for (let k = 0; k < 5; k++) makers.push(() => greyPng(256, 256, () => rnd() * 255)); // white noise
    for (let k = 0; k < 5; k++) {
      const a = rnd() * 6.28;
      makers.push(() => greyPng(320, 240, (x, y) => 128 + 120 * Math.sin((x * Math.cos(a) + y * Math.sin(a)) / (8 + k * 6)))); // stripes
    }
    for (let k = 0; k < 5; k++) {
      const n = 4 + k * 4;
      makers.push(() => greyPng(256, 256, (x, y) => ((Math.floor(x / n) + Math.floor(y / n)) % 2 ? 230 : 20))); // checkerboards
    }
    for (let k = 0; k < 5; k++) {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200"><rect width="100%" height="100%" fill="#87ceeb"/><rect y="${120 + k * 8}" width="100%" height="200" fill="#2e8b57"/><circle cx="${60 + k * 40}" cy="50" r="25" fill="#ffd700"/><rect x="${150 + k * 10}" y="${80 + k * 5}" width="60" height="50" fill="#b22222"/><text x="10" y="190" font-size="28" fill="white">hello ${k}</text></svg>`;
      makers.push(() => sharp(Buffer.from(svg)).png().toBuffer()); // outdoor-like scene with text
    }
    let flagged = 0;
    for (const make of makers) {
      const image = await decodeImage(await make(), limits);
      const r = await segment(ctx.pipeline, { image, prompts: ['heart'] });
      if (r.image.outOfDistribution) flagged++;
    }
    expect(flagged / makers.length).toBeGreaterThanOrEqual(0.8);
  });
});
