import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../src/core/models/registry.js';
import { createPipelineContext, probabilityMap, segment, type SegmentRequest, type SegmentResult } from '../../src/core/pipeline/segment.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { decodeImage } from '../../src/core/image/decode.js';
import type { RasterImage } from '../../src/core/image/raster.js';
import { drawnChestRadiographPng, greyPng } from '../helpers/fixtures.js';
import { MODELS_DIR, ROOT } from '../helpers/project.js';

/**
 * The pipeline's outputs for fixed requests, pinned: every mask, probability and uncertainty map
 * (their bytes) and every reported figure, hashed per request. The pins were written by this test
 * (PIN_WRITE=1) and hold as long as the model's own outputs do: onnxruntime may round the last
 * bit differently on another CPU, so the file also pins the model's raw outputs for a probe, and
 * where those differ the pipeline pins are not comparable (the test says so and checks nothing else).
 */
const LIMITS = { maxPixels: 1e7 };
const PINS = path.join(ROOT, 'test', 'fixtures', 'pinned-segment-outputs.json');

interface Pins {
  model_probe: string;
  requests: Record<string, string>;
}

const hash = (h: ReturnType<typeof createHash>, a: ArrayBufferView | undefined) => h.update(a ? new Uint8Array(a.buffer, a.byteOffset, a.byteLength) : new Uint8Array(0));

function digest(res: SegmentResult): string {
  const h = createHash('sha256');
  for (const r of res.results) {
    const { mask, logits, temperature, ttaStd, ...rest } = r;
    hash(h, mask);
    hash(h, probabilityMap({ logits, temperature }));
    hash(h, ttaStd);
    h.update(JSON.stringify(rest));
  }
  const { embedding, appearance, ...assessment } = res.image;
  hash(h, embedding);
  hash(h, appearance);
  h.update(JSON.stringify({ assessment, calibration: res.calibration, tta: res.tta, cache: res.cache, width: res.width, height: res.height, sha: res.imageSha256 }));
  return h.digest('hex');
}

describe('pinned pipeline outputs', () => {
  const reg = new ModelRegistry(MODELS_DIR, 2);
  afterAll(() => reg.dispose());
  const ctx = () => createPipelineContext(reg, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 8);

  async function images(): Promise<Record<string, RasterImage>> {
    const chest = await decodeImage(await drawnChestRadiographPng(320, 288), LIMITS);
    // a colonoscopy-like view: a red field in a black vignette with a paler round bump (a polyp to the
    // model: its second look, specialist and image TTA all run)
    const W = 240, H = 200, rgb = Buffer.alloc(W * H * 3);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const c = Math.hypot(x - 120, y - 100) > 110 ? [0, 0, 0] : Math.hypot(x - 150, y - 80) < 25 ? [220, 140, 120] : [170, 80, 70];
        rgb.set(c, (y * W + x) * 3);
      }
    }
    const blob = await decodeImage(await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer(), LIMITS);
    // a texture of small dark dots: tiled prompts (cell nuclei)
    const dots = await decodeImage(await greyPng(300, 260, (x, y) => (((x % 23) - 11) ** 2 + ((y % 19) - 9) ** 2 < 25 ? 40 : 200)), LIMITS);
    return { chest, blob, dots };
  }

  const requests: [string, string, Omit<SegmentRequest, 'image'>][] = [
    ['chest, defaults', 'chest', { prompts: ['left lung', 'heart', 'right clavicle', 'polyp', 'zebra stripes'] }],
    ['chest, paraphrases and a threshold', 'chest', { prompts: ['right lung', 'lungs'], tta: 3, threshold: 0.4 }],
    ['chest, conformal masks', 'chest', { prompts: ['heart', 'left lung'], conformalRecall: '0.9' }],
    ['chest, image TTA and largest component', 'chest', { prompts: ['left lung', 'heart'], ttaImage: 3, largestComponent: true }],
    ['blob, every extra pass', 'blob', { prompts: ['polyp', 'skin lesion'], zoom: true, specialist: true, ttaImage: 2, tta: 2 }],
    ['blob, auto choices', 'blob', { prompts: ['polyp', 'lesion'] }],
    ['blob, the all-datasets network beside the generalist', 'blob', { prompts: ['optic disc', 'polyp', 'foot ulcer'], tta: 1, ttaImage: 2 }],
    ['dots, tiled', 'dots', { prompts: ['cell nuclei', 'cell membranes'] }],
    ['dots, uncalibrated', 'dots', { prompts: ['cell nuclei', 'liver'], calibrated: false, ttaImage: { cell_nuclei: 2 } }],
  ];

  it('every fixed request gives the outputs pinned for it, bit for bit', async () => {
    const imgs = await images();
    const model = reg.get();
    await model.load();
    const probe = createHash('sha256');
    const px = new Uint8Array(3 * model.entry.input.size ** 2).map((_, i) => (i * 7) % 251);
    const f = await model.encodeImage(px);
    const out = await model.decode(f, await model.encodeText(['left lung']));
    hash(probe, out.maskLogits[0].data);
    probe.update(JSON.stringify([out.presenceLogit, out.iouLogit, out.similarity]));
    const got: Pins = { model_probe: probe.digest('hex'), requests: {} };
    const ran: Record<string, string[]> = {};
    for (const [name, img, req] of requests) {
      const res = await segment(ctx(), { ...req, image: imgs[img] });
      got.requests[name] = digest(res);
      ran[name] = [...new Set(res.results.flatMap((r) => [r.mode, r.zoomed && 'zoom', r.specialist && 'specialist', r.ttaStd && 'spread', r.resolution && 'generic', r.largestComponentOnly && 'lcc'].filter((v): v is string => !!v)))].sort();
    }
    // the requests exercise what their names say
    expect(ran['blob, every extra pass']).toEqual(expect.arrayContaining(['specialist', 'spread', 'zoom']));
    expect(ran['blob, auto choices']).toContain('generic');
    expect(ran['dots, tiled']).toContain('tiled');
    expect(ran['chest, paraphrases and a threshold']).toContain('spread');
    if (process.env.PIN_WRITE === '1') writeFileSync(PINS, `${JSON.stringify(got, null, 1)}\n`);
    expect(existsSync(PINS), `${PINS} is missing: write it with PIN_WRITE=1 from a commit whose outputs are known good`).toBe(true);
    const pins = JSON.parse(readFileSync(PINS, 'utf8')) as Pins;
    if (pins.model_probe !== got.model_probe) {
      console.warn('the model\'s raw outputs differ from the pinned probe on this CPU (onnxruntime rounding): the pipeline pins are not comparable here');
      return;
    }
    expect(got.requests).toEqual(pins.requests);
  }, 240_000);
});
