import { afterAll, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../src/core/models/registry.js';
import { createPipelineContext, probabilityMap, segment } from '../../src/core/pipeline/segment.js';
import { segmentRegions } from '../../src/core/pipeline/segment-region.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { AppFailure } from '../../src/core/errors.js';
import type { RasterImage } from '../../src/core/image/raster.js';
import { MODELS_DIR, ROOT, TINY_MANIFEST } from '../helpers/project.js';
import path from 'node:path';
import { drawnChestRadiographPng } from '../helpers/fixtures.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { BIOMEDCLIP_TEMPLATE } from '../../src/core/models/biomedclip-runner.js';
import { keepLargestComponent } from '../../src/core/pipeline/segment.js';
import { maskStats } from '../../src/core/image/mask-stats.js';

/** A grey image with a bright rectangle [x1, y1, x2, y2). */
function rectImage(width: number, height: number, r: [number, number, number, number]): RasterImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const v = x >= r[0] && x < r[2] && y >= r[1] && y < r[3] ? 220 : 40 + ((x * 7 + y * 3) % 20);
    data.set([v, v, v], (y * width + x) * 3);
  }
  return { width, height, data, format: 'png' };
}

const boxIoU = (mask: Uint8Array, w: number, box: [number, number, number, number]) => {
  let inter = 0, area = 0;
  const boxArea = (box[2] - box[0]) * (box[3] - box[1]);
  mask.forEach((m, i) => {
    if (!m) return;
    area++;
    const x = i % w, y = (i - x) / w;
    if (x >= box[0] && x < box[2] && y >= box[1] && y < box[3]) inter++;
  });
  return inter / (area + boxArea - inter);
};

const errorOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (e instanceof AppFailure) return e.error;
    throw e;
  }
};

describe('pretrained bundle runners on the tiny test bundles (models/tiny)', () => {
  const registry = new ModelRegistry(MODELS_DIR, 1, [TINY_MANIFEST]);
  const vocabulary = Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json'));
  const ctx = createPipelineContext(registry, vocabulary, 4);
  afterAll(() => registry.dispose());

  it('merges the extra manifest: text and region kinds, folders relative to their manifest', () => {
    const ids = registry.entries().map((e) => e.id);
    expect(ids).toEqual(expect.arrayContaining(['promptseg-builtin', 'clipseg-tiny', 'clipseg-tiny-q8', 'slimsam-tiny', 'slimsam-tiny-points', 'biomedclip-tiny']));
    expect(registry.installed(registry.entry('slimsam-tiny'))).toBe(true);
    expect(registry.dirOf(registry.entry('clipseg-tiny'))).toBe(path.join(MODELS_DIR, 'tiny', 'clipseg-tiny'));
    expect(() => registry.get('slimsam-tiny')).toThrow(/boxes and points, not text/);
    expect(() => registry.getRegion('clipseg-tiny')).toThrow(/prompted by text/);
  });

  it('CLIPSeg: the CLIP byte-level BPE tokenizer wraps prompts in start/end tokens', async () => {
    const m = registry.get('clipseg-tiny');
    const { ids } = await m.tokenize(['left lung', 'Left  LUNG']);
    expect(ids[0]).toEqual(ids[1]); // CLIP lower-cases and collapses spaces
    expect(ids[0].length).toBe(4); // <|startoftext|> left</w> lung</w> <|endoftext|>
    expect(ids[0][0]).not.toBe(ids[0][3]);
  });

  it('CLIPSeg: all prompts run in one call, masks come back at the image size, fp32 and q8 files both load', async () => {
    const img = rectImage(120, 80, [30, 20, 90, 60]);
    const prompts = ['left lung', 'polyp', 'the heart of the image'];
    const together = await segment(ctx, { image: img, prompts, modelId: 'clipseg-tiny' });
    expect(together.results.map((r) => r.mask.length)).toEqual([9600, 9600, 9600]);
    expect(together.calibration).toBe('none');
    // one batched call gives what three single calls give (padding and per-prompt slicing are right)
    for (let i = 0; i < prompts.length; i++) {
      const single = await segment(ctx, { image: img, prompts: [prompts[i]], modelId: 'clipseg-tiny' });
      const a = probabilityMap(together.results[i]), b = probabilityMap(single.results[0]);
      let d = 0;
      for (let q = 0; q < a.length; q++) d = Math.max(d, Math.abs(a[q] - b[q]));
      expect(d).toBeLessThan(1e-4);
      expect(together.results[i].presenceRaw).toBeCloseTo(single.results[0].presenceRaw, 4);
    }
    const q8 = await segment(ctx, { image: img, prompts, modelId: 'clipseg-tiny-q8' });
    expect(q8.results[0].presenceRaw).toBeCloseTo(together.results[0].presenceRaw, 5);
    // different prompts give different maps: the text really reaches the graph
    expect(together.results[0].presenceRaw).not.toBeCloseTo(together.results[1].presenceRaw, 4);
  });

  it('SAM: a box in image pixels comes back as a mask filling that box, through the processor\'s resize and padding', async () => {
    const img = rectImage(200, 120, [0, 0, 1, 1]);
    const box: [number, number, number, number] = [40, 30, 150, 90];
    const res = await segmentRegions(ctx, { image: img, regions: [{ box }], modelId: 'slimsam-tiny' });
    const r = res.results[0];
    expect(boxIoU(r.mask, 200, box)).toBeGreaterThan(0.85);
    expect(r.predictedQuality).toBeCloseTo(0.9, 5); // the candidate with the best predicted IoU
    expect(r.prompt).toBe('box [40, 30, 150, 90]');
  });

  it('SAM: a foreground point paints around it, a background point carves, the embedding is reused', async () => {
    const img = rectImage(128, 128, [0, 0, 1, 1]);
    const [fg, both] = (await segmentRegions(ctx, { image: img, regions: [{ points: [[64, 64, 1]] }, { points: [[64, 64, 1], [70, 64, 0]] }], modelId: 'slimsam-tiny' })).results;
    const at = (m: Uint8Array, x: number, y: number) => m[y * 128 + x];
    expect(at(fg.mask, 64, 64)).toBe(1);
    expect(at(fg.mask, 5, 5)).toBe(0);
    expect(fg.stats.areaPx).toBeGreaterThan(500);
    expect(both.stats.areaPx).toBeLessThan(fg.stats.areaPx);
  });

  it('SAM, points-only export (main revision): a box is refused with the decoder\'s inputs named, never sent as corner-labelled points', async () => {
    const img = rectImage(200, 120, [0, 0, 1, 1]);
    const e = await errorOf(segmentRegions(ctx, { image: img, regions: [{ box: [40, 30, 150, 90] }], modelId: 'slimsam-tiny-points' }));
    expect(e?.kind).toBe('invalid_argument');
    expect(e?.field).toBe('regions[0].box');
    expect(e?.message).toMatch(/cannot take a box: its decoder's inputs are image_embeddings, image_positional_embeddings, input_points, input_labels \(no input_boxes\)/);
    expect(e?.message).toMatch(/points-and-boxes/);
    // refinement draws from a box, so a points-only export cannot refine either
    const chest = await decodeImage(await drawnChestRadiographPng(192, 192), { maxPixels: 4e7 });
    expect((await errorOf(segment(ctx, { image: chest, prompts: ['right lung'], refine: 'slimsam-tiny-points' })))?.message).toMatch(/cannot take a box/);
    // points still work on it, with the same geometry as the points-and-boxes export
    const [pts] = (await segmentRegions(ctx, { image: rectImage(128, 128, [0, 0, 1, 1]), regions: [{ points: [[64, 64, 1]] }], modelId: 'slimsam-tiny-points' })).results;
    const [ref] = (await segmentRegions(ctx, { image: rectImage(128, 128, [0, 0, 1, 1]), regions: [{ points: [[64, 64, 1]] }], modelId: 'slimsam-tiny' })).results;
    expect(pts.stats.areaPx).toBeGreaterThan(500);
    expect(pts.stats.areaPx).toBe(ref.stats.areaPx);
  });

  it('SAM, points-and-boxes export: a box with a background point is boxed and carved; the graph\'s declared inputs are what the runner reads', async () => {
    const img = rectImage(128, 128, [0, 0, 1, 1]);
    const box: [number, number, number, number] = [20, 20, 108, 108];
    const [plain, carved] = (await segmentRegions(ctx, { image: img, regions: [{ box }, { box, points: [[24, 64, 0]] }], modelId: 'slimsam-tiny' })).results;
    expect(boxIoU(plain.mask, 128, box)).toBeGreaterThan(0.85);
    expect(plain.mask[64 * 128 + 26]).toBe(1);
    expect(carved.mask[64 * 128 + 26]).toBe(0);
    expect(carved.stats.areaPx).toBeLessThan(plain.stats.areaPx);
    const inputs = (registry.getRegion('slimsam-tiny') as unknown as { decoderInputs(): { names: string[]; boxCount?: number | string } }).decoderInputs();
    expect(inputs.names).toContain('input_boxes');
    expect(typeof inputs.boxCount).toBe('string'); // a dynamic box count: point prompts get zero boxes
  });

  it('SAM: bad region prompts are refused by name', async () => {
    const img = rectImage(100, 100, [0, 0, 1, 1]);
    expect((await errorOf(segmentRegions(ctx, { image: img, regions: [{ box: [10, 10, 200, 50] }], modelId: 'slimsam-tiny' })))?.message).toMatch(/regions\[0\]\.box .* outside the 100x100 image/);
    expect((await errorOf(segmentRegions(ctx, { image: img, regions: [{ box: [50, 10, 20, 50] }], modelId: 'slimsam-tiny' })))?.message).toMatch(/x2 > x1/);
    expect((await errorOf(segmentRegions(ctx, { image: img, regions: [{}], modelId: 'slimsam-tiny' })))?.message).toMatch(/give a box or at least one point/);
    expect((await errorOf(segmentRegions(ctx, { image: img, regions: [{ box: [1, 1, 5, 5] }], modelId: 'clipseg-tiny' })))?.kind).toBe('invalid_argument');
  });

  it('BiomedCLIP + SAM: the similarity region\'s box is redrawn by the region model named in refine_with', async () => {
    const img = rectImage(160, 160, [50, 40, 110, 120]);
    const res = await segment(ctx, { image: img, prompts: ['polyp', 'left lung'], modelId: 'biomedclip-tiny' });
    expect(res.results.filter((r) => r.refinedBy).length).toBeGreaterThan(0);
    for (const r of res.results) {
      if (!r.refinedBy) {
        expect(r.presence).toBeLessThan(0.5); // only an absent verdict skips refinement
        continue;
      }
      expect(r.refinedBy.model).toBe('slimsam-tiny');
      const [x1, y1, x2, y2] = r.refinedBy.box;
      expect(boxIoU(r.mask, 160, [x1, y1, x2, y2])).toBeGreaterThan(0.8); // the tiny SAM fills the box it was given
      expect(r.predictedQuality).toBeCloseTo(0.9, 5);
    }
    expect(res.timingsMs.refine).toBeGreaterThanOrEqual(0);
    const off = await segment(ctx, { image: img, prompts: ['polyp'], modelId: 'biomedclip-tiny', refine: 'none' });
    expect(off.results[0].refinedBy).toBeUndefined();
  });

  it('BiomedCLIP: prompts reach the text tower through the bundle\'s template (BiomedCLIP\'s "this is a photo of {}" unless config.json names another)', async () => {
    const runner = registry.get('biomedclip-tiny') as unknown as { load(): Promise<void>; config: { prompt_template: string }; encodeText(p: string[]): Promise<Float32Array[]> };
    await runner.load();
    expect(runner.config.prompt_template).toBe('{}'); // the tiny bundle's untrained tower sees the bare prompt
    const [bare] = await runner.encodeText(['polyp']);
    const [worded] = await runner.encodeText(['this is a photo of polyp']);
    runner.config.prompt_template = BIOMEDCLIP_TEMPLATE;
    try {
      const [templated] = await runner.encodeText(['polyp']);
      expect(Array.from(templated)).toEqual(Array.from(worded));
      expect(Array.from(templated)).not.toEqual(Array.from(bare));
    } finally {
      runner.config.prompt_template = '{}';
    }
  });

  it('refine works for any text model: the built-in model\'s mask box goes to SAM', async () => {
    const img = await decodeImage(await drawnChestRadiographPng(192, 192), { maxPixels: 4e7 });
    // the right lung of a drawn radiograph, at the mask threshold 0.5 (as image-tta.test.ts)
    const plain = await segment(ctx, { image: img, prompts: ['right lung'], threshold: 0.5 });
    const ref = await segment(ctx, { image: img, prompts: ['right lung'], refine: 'slimsam-tiny', threshold: 0.5 });
    expect(plain.results[0].refinedBy).toBeUndefined();
    expect(plain.results[0].maskProduced).toBe(true);
    const r = ref.results[0];
    expect(r.refinedBy?.model).toBe('slimsam-tiny');
    // the box is that of the mask's largest connected region (stray islands do not stretch it)
    const largest = plain.results[0].mask.slice();
    keepLargestComponent(largest, img.width, img.height);
    const [bx, by, bw, bh] = maskStats(largest, img.width, img.height).bbox!;
    const [x1, y1, x2, y2] = r.refinedBy!.box;
    expect(x1).toBeLessThanOrEqual(bx);
    expect(y1).toBeLessThanOrEqual(by);
    expect(x2).toBeGreaterThanOrEqual(bx + bw - 1);
    expect(y2).toBeGreaterThanOrEqual(by + bh - 1);
    expect(boxIoU(r.mask, img.width, [x1, y1, x2, y2])).toBeGreaterThan(0.8);
    expect((await errorOf(segment(ctx, { image: img, prompts: ['left lung'], refine: 'clipseg-tiny' })))?.message).toMatch(/prompted by text/);
  });
});
