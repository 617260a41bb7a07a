import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IMAGE_TRANSFORMS } from '../../src/core/pipeline/image-tta.js';
import { ModelRegistry } from '../../src/core/models/registry.js';
import { calibrationFor, createPipelineContext, probabilityMap, segment } from '../../src/core/pipeline/segment.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import type { RasterImage } from '../../src/core/image/raster.js';
import { drawnChestRadiographPng, greyPng } from '../helpers/fixtures.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { MODELS_DIR, ROOT } from '../helpers/project.js';

describe('image-side test-time augmentation', () => {
  it('every transform\'s inverse puts a per-pixel map back where the original pixels were', () => {
    const w = 40, h = 30;
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) data.fill((i * 37) % 251, i * 3, i * 3 + 3);
    const image: RasterImage = { width: w, height: h, data, format: 'png' };
    for (const tf of IMAGE_TRANSFORMS.filter((tf) => !tf.name.startsWith('scale'))) {
      const t = tf.apply(image);
      // a "model" whose logit at a pixel is that pixel's red value, read on the transformed image
      // the right-angle rotations and diagonal reflections swap the image's width and height
      expect([t.width, t.height]).toEqual(tf.orientationFreeOnly ? [h, w] : [w, h]);
      const grid = { width: t.width, height: t.height, data: Float32Array.from({ length: w * h }, (_, i) => t.data[i * 3]) };
      const back = tf.invert(grid);
      expect([back.width, back.height]).toEqual([w, h]);
      const edge = Math.max(1, Math.round(0.03 * w)) + 1;
      let checked = 0;
      for (let y = edge; y < h - edge; y++) {
        for (let x = edge; x < w - edge; x++) {
          const orig = data[(y * w + x) * 3];
          const expected = tf.name.startsWith('gamma') ? Math.round(255 * (orig / 255) ** Number(tf.name.split('_')[1])) : orig;
          expect(back.data[y * w + x]).toBe(expected);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(500);
    }
  });

  it('the quarter turns and diagonal reflections move a marked corner where a rotation would', () => {
    const w = 5, h = 3;
    const data = new Uint8Array(w * h * 3);
    data.fill(200, 0, 3); // the top-left pixel
    const image: RasterImage = { width: w, height: h, data, format: 'png' };
    const where = (tf: string) => {
      const t = IMAGE_TRANSFORMS.find((x) => x.name === tf)!.apply(image);
      const i = t.data.indexOf(200) / 3;
      return [i % t.width, Math.floor(i / t.width)];
    };
    expect(where('transpose')).toEqual([0, 0]);
    expect(where('rot90')).toEqual([h - 1, 0]); // clockwise: top-left to top-right
    expect(where('rot270')).toEqual([0, w - 1]); // anticlockwise: top-left to bottom-left
    expect(where('antitranspose')).toEqual([h - 1, w - 1]);
  });

  it('the scale transforms resample about the centre and their inverse undoes them', () => {
    const w = 48, h = 36;
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.fill(3 * x + 2 * y, (y * w + x) * 3, (y * w + x) * 3 + 3); // a ramp: bilinear keeps it
    const image: RasterImage = { width: w, height: h, data, format: 'png' };
    const scales = IMAGE_TRANSFORMS.filter((tf) => tf.name.startsWith('scale'));
    expect(scales.map((tf) => tf.name)).toEqual(['scale_1.1', 'scale_0.9']);
    for (const tf of scales) {
      const s = Number(tf.name.split('_')[1]);
      const t = tf.apply(image);
      // a pixel of the transformed image shows the original at centre + (p - centre) / s
      const at = (x: number, y: number) => t.data[(y * w + x) * 3];
      expect(Math.abs(at(40, 30) - (3 * ((40.5 - w / 2) / s + w / 2 - 0.5) + 2 * ((30.5 - h / 2) / s + h / 2 - 0.5)))).toBeLessThanOrEqual(0.5);
      const grid = { width: w, height: h, data: Float32Array.from({ length: w * h }, (_, i) => t.data[i * 3]) };
      const back = tf.invert(grid);
      for (let y = 3; y < h - 3; y++) for (let x = 3; x < w - 3; x++) expect(Math.abs(back.data[y * w + x] - data[(y * w + x) * 3])).toBeLessThanOrEqual(1);
    }
  });

  describe('on the built-in model', () => {
    const registry = new ModelRegistry(MODELS_DIR, 2);
    const ctx = createPipelineContext(registry, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 8);
    afterAll(() => registry.dispose());

    it('never mirrors for lateral or thoracic prompts, does for others, and reports disagreement', async () => {
      const image = await decodeImage(await drawnChestRadiographPng(160, 160), { maxPixels: 4e7 });
      // the right lung, at the mask threshold 0.5 (a drawn radiograph: the calibration's choices are fitted on real ones)
      const lateral = await segment(ctx, { image, prompts: ['right lung'], ttaImage: 2, threshold: 0.5 });
      expect(lateral.tta!.imageTransforms).toEqual(['gamma_0.8', 'shift_+3%']);
      const r = lateral.results[0];
      expect(r.maskProduced).toBe(true);
      expect(r.ttaStd).toBeDefined();
      expect(r.uncertainty.ttaDisagreement).toBeGreaterThan(0); // the members differ on this made-up image
      // the averaged mask still lands on the patient's right (the image's left half)
      let right = 0, left = 0;
      r.mask.forEach((m, i) => (m ? ((i % image.width) >= image.width / 2 ? right++ : left++) : 0));
      expect(left).toBeGreaterThan(4 * right);
      const lesion = await segment(ctx, { image, prompts: ['skin lesion', 'left lung'], ttaImage: 1 });
      expect(lesion.tta!.imageTransforms).toEqual(['hflip', 'gamma_0.8']); // hflip for the lesion only
      // dermoscopy has no preferred orientation: its prompts also get the quarter turns and diagonal reflections
      // (on an image wider than tall, whose turned copies are taller than wide)
      const wide = await decodeImage(await greyPng(200, 120, (x, y) => ((x - 120) ** 2 + (y - 50) ** 2 < 30 ** 2 ? 60 : 190)), { maxPixels: 4e7 });
      const turned = await segment(ctx, { image: wide, prompts: ['skin lesion', 'polyp'], ttaImage: 3 });
      expect(turned.tta!.imageTransforms).toEqual(['hflip', 'transpose', 'gamma_0.8', 'shift_+3%']);
      const once = await segment(ctx, { image: wide, prompts: ['skin lesion'], ttaImage: 0 });
      for (const r of [...turned.results, ...once.results]) expect(r.mask).toHaveLength(200 * 120);
      // the copies are mapped back onto the original pixels: the averaged probability map follows the single look's
      const a = probabilityMap(turned.results[0]), b = probabilityMap(once.results[0]);
      const mean = (v: Float32Array) => v.reduce((s, x) => s + x, 0) / v.length;
      const ma = mean(a), mb = mean(b);
      let sab = 0, saa = 0, sbb = 0;
      a.forEach((v, i) => { sab += (v - ma) * (b[i] - mb); saa += (v - ma) ** 2; sbb += (b[i] - mb) ** 2; });
      expect(sab / Math.sqrt(saa * sbb)).toBeGreaterThan(0.8);
    });

    it('redraws a zoomed prompt\'s crop, not the whole image, and keeps its first look\'s presence', async () => {
      // a bright disc on a dark ground, which the built-in model takes for a left ventricle (presence
      // about 0.9): small enough for the second, closer look (the specialist off: the ACDC U-Net would redraw it whole)
      const image = await decodeImage(await greyPng(200, 160, (x, y) => ((x - 110) ** 2 + (y - 80) ** 2 < 25 ** 2 ? 220 : 40)), { maxPixels: 4e7 });
      const once = await segment(ctx, { image, prompts: ['left ventricle'], zoom: true, specialist: false, ttaImage: 0 });
      expect(once.results[0].zoomed).toBe(true);
      const tta = await segment(ctx, { image, prompts: ['left ventricle'], zoom: true, specialist: false, ttaImage: 4 });
      const r = tta.results[0];
      expect(r.zoomed).toBe(true);
      expect(tta.tta!.imageTransforms).toHaveLength(4);
      expect(r.ttaStd).toBeDefined();
      // the members are crops pasted over the first look: outside the crop they all agree
      const far = r.ttaStd!.filter((_, i) => Math.abs((i % image.width) - 110) > 60 || Math.abs(Math.floor(i / image.width) - 80) > 60);
      expect(far.length).toBeGreaterThan(1000);
      expect(Math.max(...far)).toBeLessThan(1e-6);
      expect(Math.max(...r.ttaStd!)).toBeGreaterThan(0); // inside it they differ
      expect(r.presence).toBeCloseTo(once.results[0].presence, 9); // presence is the whole image's first look
      expect(r.mask.reduce((a, v) => a + v, 0)).toBeGreaterThan(0);
    });

    it('gives each structure its own count: by slug, or by default from the calibration', async () => {
      const image = await decodeImage(await drawnChestRadiographPng(160, 160), { maxPixels: 4e7 });
      const bySlug = await segment(ctx, { image, prompts: ['heart', 'right lung'], ttaImage: { heart: 2 } });
      expect(bySlug.tta!.imageTransforms).toEqual(['gamma_0.8', 'shift_+3%']); // thoracic: no mirroring
      expect(bySlug.results[0].ttaStd).toBeDefined();
      expect(bySlug.results[1].ttaStd).toBeUndefined(); // the right lung ran once: no disagreement to report
      expect(bySlug.results[1].uncertainty.ttaDisagreement).toBeUndefined();
      // 'auto' (the default) follows the calibration's table; the shipped calibration is read, then amended here
      const entry = registry.get().entry;
      const shipped = calibrationFor(ctx, entry);
      expect(shipped).toBeDefined();
      ctx.calibrations.set(entry.id, { ...shipped!, tta_image: { heart: 1 } });
      try {
        const auto = await segment(ctx, { image, prompts: ['heart', 'right lung'] });
        expect(auto.tta!.imageTransforms).toEqual(['gamma_0.8']); // thoracic: no mirroring
        expect(auto.results[0].ttaStd).toBeDefined();
        expect(auto.results[1].ttaStd).toBeUndefined();
        const raw = await segment(ctx, { image, prompts: ['heart'], calibrated: false });
        expect(raw.tta!.imageTransforms).toEqual([]);
        const off = await segment(ctx, { image, prompts: ['heart'], ttaImage: 0 });
        expect(off.tta!.imageTransforms).toEqual([]);
      } finally {
        ctx.calibrations.set(entry.id, shipped);
      }
      // a table's count is not spent on a prompt the first look calls clearly absent; a count for every prompt is
      const polyp = await segment(ctx, { image, prompts: ['polyp'], ttaImage: { polyp: 2 } });
      expect(polyp.results[0].presenceRaw).toBeLessThan(0.1);
      expect(polyp.tta!.imageTransforms).toEqual([]);
      const forced = await segment(ctx, { image, prompts: ['polyp'], ttaImage: 2 });
      expect(forced.tta!.imageTransforms).toEqual(['hflip', 'gamma_0.8']);
      await expect(segment(ctx, { image, prompts: ['heart'], ttaImage: { heart: IMAGE_TRANSFORMS.length + 1 } })).rejects.toThrow(/tta_image/);
    });
  });
});
