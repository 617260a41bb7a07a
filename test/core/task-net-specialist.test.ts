import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { drawnChestRadiographPng } from '../helpers/fixtures.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { ManifestSchema, redrawingCandidates, redrawingSpecialist } from '../../src/core/models/manifest.js';
import { ModelRegistry } from '../../src/core/models/registry.js';
import { TaskNet } from '../../src/core/models/task-net.js';
import { createPipelineContext, segment } from '../../src/core/pipeline/segment.js';
import { modelFilesFingerprint, type Calibration } from '../../src/core/trust/calibration.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { dice } from '../../src/core/stats.js';
import { MODELS_DIR, ROOT } from '../helpers/project.js';

/**
 * A task-specific network as a redrawing specialist: the shipped model's bundle (linked) with the
 * tiny test task net (models/tiny/taskseg-tiny: channel 0 = (mean RGB - 128) / 8, channel 1 =
 * (96 - mean RGB) / 8) declared as the specialist of the polyp and the skin lesion.
 */
function modelsWithTaskNet(spec: { structures: string[]; trainedOn?: string; keepShipped?: boolean; calibration?: (cal: Calibration) => void } = { structures: ['polyp', 'skin_lesion'] }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-tasknet-'));
  const bundle = path.join(dir, 'promptseg-builtin');
  mkdirSync(bundle);
  for (const f of readdirSync(path.join(MODELS_DIR, 'promptseg-builtin'))) symlinkSync(path.join(MODELS_DIR, 'promptseg-builtin', f), path.join(bundle, f));
  const net = readFileSync(path.join(MODELS_DIR, 'tiny', 'taskseg-tiny', 'model.onnx'));
  writeFileSync(path.join(bundle, 'task_net.tiny.onnx'), net);
  const shipped = JSON.parse(readFileSync(path.join(MODELS_DIR, 'manifest.json'), 'utf8'));
  const entry = shipped.models.find((e: { id: string }) => e.id === 'promptseg-builtin');
  entry.files['task_net.tiny.onnx'] = { sha256: createHash('sha256').update(net).digest('hex'), bytes: net.length };
  // the tiny net is the only redrawing specialist of its structures (the shipped polyp and chest U-Net ones set aside), or the last of them
  if (!spec.keepShipped) entry.specialists = entry.specialists.filter((sp: { structures: string[]; own_presence?: boolean }) => sp.own_presence || !sp.structures.some((st) => spec.structures.includes(st)));
  entry.specialists.push({ name: 'tiny-net', structures: spec.structures, task_net: { file: 'task_net.tiny.onnx', input_size: 64, tiled: false }, ...(spec.trainedOn ? { training: { dataset: spec.trainedOn } } : {}) });
  if (spec.calibration) {
    // the shipped calibration, changed and marked as fitted on these files
    const cal = JSON.parse(readFileSync(path.join(MODELS_DIR, 'promptseg-builtin', entry.calibration), 'utf8')) as Calibration;
    spec.calibration(cal);
    cal.fitted_on.model_files_sha256 = modelFilesFingerprint(entry.files);
    rmSync(path.join(bundle, entry.calibration));
    writeFileSync(path.join(bundle, entry.calibration), JSON.stringify(cal));
  }
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ default: 'promptseg-builtin', models: [entry] }));
  return dir;
}

describe('a task-specific network as a redrawing specialist', () => {
  const reg = new ModelRegistry(modelsWithTaskNet(), 2);
  afterAll(() => reg.dispose());
  const ctx = () => createPipelineContext(reg, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 8);

  async function colonoscopyLike() {
    // a red field in a black vignette with a paler round bump (mean RGB 160, the field's 107): a polyp to the first look
    const W = 240, H = 200, rgb = Buffer.alloc(W * H * 3), bump = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const inBump = Math.hypot(x - 150, y - 80) < 25;
        bump[y * W + x] = inBump ? 1 : 0;
        rgb.set(Math.hypot(x - 120, y - 100) > 110 ? [0, 0, 0] : inBump ? [220, 140, 120] : [170, 80, 70], (y * W + x) * 3);
      }
    }
    return { image: await decodeImage(await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer(), { maxPixels: 1e7 }), bump };
  }

  it('redraws the mask with the net (its channel for the structure), keeps the first look’s presence, and runs no closer look or image copies through it', async () => {
    const { image, bump } = await colonoscopyLike();
    const ask = { image, prompts: ['polyp'], calibrated: false, zoom: true, ttaImage: 2 } as const;
    const first = await segment(ctx(), { ...ask, specialist: false });
    const redrawn = await segment(ctx(), { ...ask, specialist: true });
    const [a, b] = [first.results[0], redrawn.results[0]];
    expect(a.specialist).toBeUndefined();
    expect(b.specialist).toBe('tiny-net');
    expect(b.presence).toBe(a.presence);
    expect(b.zoomed).toBeFalsy();
    expect(a.zoomed).toBe(true);
    expect(a.ttaStd).toBeDefined();
    expect(b.ttaStd).toBeUndefined();
    // the mask is the net's own: its channel 0 (the polyp's) at p >= 0.5, as the net gives it on this image
    const net = await TaskNet.open(path.join(MODELS_DIR, 'tiny', 'taskseg-tiny'), 1);
    const own = (await net.segment(image))[0];
    await net.dispose();
    expect(Array.from(b.mask)).toEqual(Array.from(own.data, (v) => (v >= 0 ? 1 : 0)));
    // ... which is the pale bump (a threshold of the mean grey at 128), not what the generalist drew
    expect(dice(b.mask, bump)).toBeGreaterThan(0.9);
    expect(Array.from(b.mask)).not.toEqual(Array.from(a.mask));
    // a further prompt on the image reads the net's logits from the feature cache
    const c = ctx(), plain = { image, calibrated: false, specialist: true } as const;
    expect((await segment(c, { ...plain, prompts: ['polyp'] })).cache.imageFeatures).toBe('miss');
    const further = await segment(c, { ...plain, prompts: ['polyp'] });
    expect(further.cache.imageFeatures).toBe('hit');
    expect(further.results[0].specialist).toBe('tiny-net');
    expect(Array.from(further.results[0].mask)).toEqual(Array.from(b.mask));
  }, 60_000);

  it('redraws a structure two networks answer for (the left lung: clean and COVID-19 radiographs) only on images routed to its own training set', async () => {
    const image = await decodeImage(await drawnChestRadiographPng(256, 256), { maxPixels: 1e7 });
    const ask = { image, prompts: ['left lung'], specialist: true } as const;
    // where the image is routed: the all-datasets network answers on COVID-19 radiographs, the model's own on JSRT's
    const route = (await segment(ctx(), { ...ask, specialist: false })).results[0].specialist;
    const routedTo = route === 'all-datasets' ? 'gb_covid_cxr' : 'jsrt_scr_cxr';
    expect(route === undefined || route === 'all-datasets').toBe(true);
    for (const trainedOn of ['gb_covid_cxr', 'jsrt_scr_cxr', undefined]) {
      const r = new ModelRegistry(modelsWithTaskNet({ structures: ['left_lung', 'skin_lesion'], trainedOn }), 2);
      const res = (await segment(createPipelineContext(r, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 8), ask)).results[0];
      await r.dispose();
      expect(res.presence).toBeGreaterThan(0.5);
      expect(res.specialist, `net trained on ${trainedOn}, image routed to ${routedTo}`).toBe(trainedOn === routedTo ? 'tiny-net' : route);
    }
  }, 120_000);

  it('is one of several that may redraw a structure: the first in manifest order unless the request or the calibration names another', async () => {
    const { image } = await colonoscopyLike();
    const vocab = Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json'));
    const both = new ModelRegistry(modelsWithTaskNet({ structures: ['polyp', 'skin_lesion'], keepShipped: true }), 2);
    const e = both.entry('promptseg-builtin');
    expect(redrawingCandidates(e, 'polyp').map((sp) => sp.name)).toEqual(['polyp', 'tiny-net']);
    const ask = { image, prompts: ['polyp'], calibrated: false, zoom: false, ttaImage: 0 } as const;
    expect((await segment(createPipelineContext(both, vocab, 8), { ...ask, specialist: true })).results[0].specialist).toBe('polyp');
    const named = (await segment(createPipelineContext(both, vocab, 8), { ...ask, specialist: true, specialistNames: { polyp: 'tiny-net' } })).results[0];
    expect(named.specialist).toBe('tiny-net');
    // the same mask as with the tiny net alone
    const alone = (await segment(ctx(), { ...ask, specialist: true })).results[0];
    expect(Array.from(named.mask)).toEqual(Array.from(alone.mask));
    await both.dispose();
    // the calibration's choice under specialist 'auto' (none named: the first)
    for (const chosen of ['tiny-net', undefined]) {
      const reg2 = new ModelRegistry(modelsWithTaskNet({ structures: ['polyp', 'skin_lesion'], keepShipped: true, calibration: (cal) => {
        cal.specialists = [...new Set([...(cal.specialists ?? []), 'polyp'])];
        if (chosen) cal.specialist_names = { polyp: chosen };
      } }), 2);
      const res = await segment(createPipelineContext(reg2, vocab, 8), { image, prompts: ['polyp'], zoom: false, ttaImage: 0 });
      expect(res.calibration).toBe('fitted');
      expect(res.results[0].specialist).toBe(chosen ?? 'polyp');
      await reg2.dispose();
    }
  }, 120_000);

  it('is chosen per structure like any redrawing specialist, and the manifest refuses a task net that would answer for presence', () => {
    const e = reg.entry('promptseg-builtin');
    expect(redrawingSpecialist(e, 'skin_lesion')?.name).toBe('tiny-net');
    const m = { default: 'promptseg-builtin', models: [structuredClone(e)] };
    m.models[0].specialists!.find((sp) => sp.name === 'tiny-net')!.own_presence = true;
    expect(ManifestSchema.safeParse(m).error?.issues.map((i) => i.message).join('; ')).toMatch(/specialist "tiny-net" needs either an image_encoder and a mask_decoder, or a task_net \(which redraws masks only: no own_presence\)/);
    const m2 = { default: 'promptseg-builtin', models: [structuredClone(e)] };
    delete m2.models[0].specialists!.find((sp) => sp.name === 'em')!.mask_decoder;
    expect(ManifestSchema.safeParse(m2).error?.issues.map((i) => i.message).join('; ')).toMatch(/specialist "em" needs either an image_encoder and a mask_decoder, or a task_net/);
  });
});
