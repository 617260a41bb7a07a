import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateSuite } from '../../src/eval/eval-command.js';
import { fitCalibration, fitKnnStats } from '../../src/eval/calibrate.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { assessImage, segment } from '../../src/core/pipeline/segment.js';
import { CalibrationSchema } from '../../src/core/trust/calibration.js';
import { createServiceContext, disposeServiceContext } from '../../src/service/context.js';
import { MODELS_DIR, ROOT, SHARED_DATA, sharedMissing, TINY_MANIFEST } from '../helpers/project.js';
import { testConfig } from '../helpers/service.js';

/** A two-dataset collection in the medseg2d layout, drawn by code: discs on a grey background. */
async function tinyCollection(dir: string, split: 'test' | 'val' = 'test', o: { train?: boolean } = {}): Promise<void> {
  const sets = [
    { id: 'synthetic_derm', modality: 'dermoscopy', slug: 'skin_lesion', name: 'skin lesion' },
    { id: 'synthetic_us', modality: 'ultrasound', slug: 'fetal_head', name: 'fetal head' },
  ];
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'index.json'), JSON.stringify(sets.map((s) => ({ id: s.id }))));
  for (const s of sets) {
    const d = path.join(dir, s.id);
    mkdirSync(path.join(d, 'images'), { recursive: true });
    mkdirSync(path.join(d, 'masks', s.slug), { recursive: true });
    // with train cases: five, the same images in train and `split` (enough for k-NN statistics with k = 3)
    const cases = o.train ? ['c1', 'c2', 'c3', 'c4', 'c5'] : ['c1', 'c2', 'c3'];
    for (const [k, c] of cases.entries()) {
      const size = 96, cx = 40 + k * 8, cy = 48, r = 18 + k * 3;
      const img = Buffer.alloc(size * size * 3), mask = Buffer.alloc(size * size);
      for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
        const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
        const i = y * size + x;
        mask[i] = inside ? 255 : 0;
        img.fill(inside ? 70 : 180, i * 3, i * 3 + 3);
      }
      await sharp(img, { raw: { width: size, height: size, channels: 3 } }).png().toFile(path.join(d, 'images', c + '.png'));
      await sharp(mask, { raw: { width: size, height: size, channels: 1 } }).png().toFile(path.join(d, 'masks', s.slug, c + '.png'));
    }
    writeFileSync(path.join(d, 'dataset.json'), JSON.stringify({ id: s.id, modality: s.modality, structures: [{ slug: s.slug, name: s.name, synonyms: [] }], image_ext: ['.png'] }));
    writeFileSync(path.join(d, 'splits.json'), JSON.stringify({ train: o.train ? cases : [], val: split === 'val' ? cases : [], test: split === 'test' ? cases : [] }));
  }
}

describe('promptseg eval', () => {
  const contexts: ReturnType<typeof createServiceContext>[] = [];
  afterAll(async () => {
    for (const c of contexts) await disposeServiceContext(c);
  });

  it('runs two models side by side on a collection made by code and writes results.json, report.md and report.html', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-'));
    await tinyCollection(path.join(dir, 'data'));
    // a second registry entry with the same files, so the paired table has two models to compare
    const models = path.join(dir, 'models');
    mkdirSync(models);
    cpSync(path.join(MODELS_DIR, 'promptseg-builtin'), path.join(models, 'promptseg-builtin'), { recursive: true, filter: (p) => !p.includes('train-state') });
    const manifest = JSON.parse(readFileSync(path.join(MODELS_DIR, 'manifest.json'), 'utf8'));
    manifest.models.push({ ...manifest.models[0], id: 'builtin-copy' });
    writeFileSync(path.join(models, 'manifest.json'), JSON.stringify(manifest));
    const suiteFile = path.join(dir, 'suite.json');
    writeFileSync(suiteFile, JSON.stringify({ name: 'tiny', data_root: 'data', models: ['promptseg-builtin', 'builtin-copy'], bootstrap: 200, negatives: { absent_per_case: 1, nonsense_per_case: 1 }, ood_probe_per_kind: 1, dice_targets: { 'synthetic_derm/skin_lesion': 0.5, 'synthetic_xray/heart': 0.9 } }));
    const ctx = createServiceContext(testConfig({ PROMPTSEG_MODELS_DIR: models }));
    contexts.push(ctx);
    const out = path.join(dir, 'out');
    const r = await evaluateSuite(ctx, { suiteFile, outDir: out });
    expect(r.reused).toBe(false);
    for (const f of ['results.json', 'report.md', 'report.html']) expect(existsSync(path.join(out, f))).toBe(true);
    const res = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(res.meta.models.map((m: { id: string }) => m.id)).toEqual(['promptseg-builtin', 'builtin-copy']);
    // 2 models x 2 datasets x 3 cases x (canonical + eval-only + absent + nonsense)
    expect(res.records).toHaveLength(2 * 2 * 3 * 4);
    for (const s of r.summary.structures) {
      expect(s.n).toBe(3);
      expect(s.dice).toBeGreaterThanOrEqual(0);
      expect(s.dice).toBeLessThanOrEqual(1);
      expect(s.dice_ci[0]).toBeLessThanOrEqual(s.dice + 1e-9);
    }
    // the suite's Dice target is judged against the measured Dice, and only where the suite sets one
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    for (const s of r.summary.structures) {
      if (s.dataset === 'synthetic_derm') {
        expect(s.dice_target).toBe(0.5);
        expect(s.target_met).toBe(s.dice >= 0.5);
      } else {
        expect(s.dice_target).toBeNull();
        expect(s.target_met).toBeNull();
      }
    }
    // the suite names no threshold: each structure is drawn at the one served by default
    const fitted = JSON.parse(readFileSync(path.join(models, 'promptseg-builtin', 'calibration.json'), 'utf8')).mask_threshold ?? {};
    for (const s of r.summary.structures) expect(s.mask_threshold).toBe(fitted[s.structure] ?? 0.5);
    expect(md).toContain('| mask threshold | target |');
    const derm = r.summary.structures.find((s) => s.model === 'promptseg-builtin' && s.dataset === 'synthetic_derm')!;
    expect(md).toContain(`| ${derm.dice.toFixed(3)} |`);
    expect(md).toContain(derm.target_met ? '| 0.50 met |' : '| 0.50 not met |');
    expect(md).toContain(`promptseg-builtin: Dice targets met ${derm.target_met ? 1 : 0} of 1`);
    // a target naming no structure of the run is reported, not silently dropped from the count
    expect(r.summary.targets_not_evaluated).toEqual(['synthetic_xray/heart']);
    expect(md).toContain('Dice targets not evaluated in this run (no such dataset/structure among its cases): synthetic_xray/heart.');
    // identical models: every paired difference is exactly zero, and results are deterministic
    expect(r.summary.paired.length).toBe(2);
    for (const p of r.summary.paired) expect(p.mean_difference).toBe(0);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toMatch(/<img src="data:image\/png;base64,/); // worst-case overlays
    const coords = html.match(/c[xy]="[^"]*"/g) ?? [];
    expect(coords.length).toBeGreaterThan(0);
    for (const c of coords) expect(c).toMatch(/^c[xy]="-?\d+(\.\d+)?"$/); // plot coordinates are numbers
    expect(r.summary.by_modality.map((m) => m.modality).sort()).toEqual(['dermoscopy', 'dermoscopy', 'ultrasound', 'ultrasound']);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('modality: ultrasound');
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // self-contained
    const again = await evaluateSuite(ctx, { suiteFile, outDir: out });
    expect(again.reused).toBe(true);
    // the out-of-distribution probe ran one made-up image of each kind through each model
    expect(r.summary.ood['promptseg-builtin'].probe!.images).toBe(5);
    expect(Object.keys(r.summary.ood['promptseg-builtin'].probe!.by_kind).sort()).toEqual(['gradient', 'noise', 'pattern', 'scene', 'text']);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(/non-medical images made by code flagged/);
    // every absent, empty and nonsense prompt of the run is counted in the combined empty-mask rate
    const p = r.summary.presence['promptseg-builtin'];
    const negs = res.records.filter((x: { model: string; set: string; gt_present: boolean }) => x.model === 'promptseg-builtin' && (x.set === 'absent' || x.set === 'nonsense' || !x.gt_present));
    expect(p.n_neg).toBe(negs.length);
    expect(p.all_negatives_empty_rate).toBeCloseTo(negs.filter((x: { mask_empty: boolean }) => x.mask_empty).length / negs.length, 10);
  });

  it('runs the pretrained bundle runners side by side with the built-in model (tiny test bundles)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-'));
    await tinyCollection(path.join(dir, 'data'));
    const suiteFile = path.join(dir, 'suite.json');
    const ids = ['promptseg-builtin', 'clipseg-tiny', 'biomedclip-tiny'];
    writeFileSync(suiteFile, JSON.stringify({ name: 'bundles', data_root: 'data', models: ids, bootstrap: 100, negatives: { absent_per_case: 1, nonsense_per_case: 1 }, ood_probe_per_kind: 0 }));
    const ctx = createServiceContext(testConfig({ PROMPTSEG_EXTRA_MANIFESTS: TINY_MANIFEST }));
    contexts.push(ctx);
    const out = path.join(dir, 'out');
    const r = await evaluateSuite(ctx, { suiteFile, outDir: out });
    const res = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(res.meta.models.map((m: { id: string }) => m.id)).toEqual(ids);
    expect(res.records).toHaveLength(3 * 2 * 3 * 4);
    for (const id of ids) expect(r.summary.structures.filter((s) => s.model === id).length).toBe(2);
    expect(r.summary.paired.length).toBeGreaterThanOrEqual(2);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('biomedclip-tiny');
  });

  it('calibrates a pretrained bundle the way it calibrates the built-in model (CLIPSeg: derived presence, no OOD embedding)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-'));
    await tinyCollection(path.join(dir, 'data'), 'val');
    const ctx = createServiceContext(testConfig({ PROMPTSEG_EXTRA_MANIFESTS: TINY_MANIFEST }));
    contexts.push(ctx);
    const cal = await fitCalibration(ctx, { modelId: 'clipseg-tiny', dataRoot: path.join(dir, 'data') });
    expect(CalibrationSchema.safeParse(cal).success).toBe(true);
    expect(cal.ood).toBeUndefined();
    expect(cal.pixel_temperature).toBeGreaterThan(0);
    expect(Number.isFinite(cal.presence.a) && Number.isFinite(cal.presence.b)).toBe(true);
    expect(cal.fitted_on.cases).toBe(6);
  });

  it('calibrates the built-in model on the datasets whose structures it knows, with out-of-distribution statistics of its pooled embedding read from train images asked no prompt', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-'));
    const data = path.join(dir, 'data');
    await tinyCollection(data, 'val', { train: true });
    // a third dataset whose structure the model does not know: left out of every fit, and named
    cpSync(path.join(data, 'synthetic_derm'), path.join(data, 'synthetic_unknown'), { recursive: true });
    writeFileSync(path.join(data, 'synthetic_unknown', 'dataset.json'), JSON.stringify({ id: 'synthetic_unknown', modality: 'dermoscopy', structures: [{ slug: 'wobble_gland', name: 'wobble gland', synonyms: [] }], image_ext: ['.png'] }));
    writeFileSync(path.join(data, 'index.json'), JSON.stringify([{ id: 'synthetic_derm' }, { id: 'synthetic_unknown' }, { id: 'synthetic_us' }]));
    const ctx = createServiceContext(testConfig());
    contexts.push(ctx);
    const cal = await fitCalibration(ctx, { dataRoot: data, trainLimit: 5 });
    expect(CalibrationSchema.safeParse(cal).success).toBe(true);
    expect(cal.fitted_on.datasets).toEqual(['synthetic_derm', 'synthetic_us']);
    expect(cal.fitted_on.skipped_datasets).toEqual([{ dataset: 'synthetic_unknown', unknown: ['wobble_gland'] }]);
    expect(cal.fitted_on.cases).toBe(10);
    const image = await decodeImage(readFileSync(path.join(data, 'synthetic_derm', 'images', 'c2.png')), { maxPixels: 1e6 });
    const asked = await segment(ctx.pipeline, { image, prompts: ['skin lesion'], calibrated: false });
    const bare = await segment(ctx.pipeline, { image, prompts: [], calibrated: false });
    expect(asked.image.embedding.length).toBeGreaterThan(0);
    expect(bare.image.embedding).toEqual(asked.image.embedding);
    expect(cal.ood!.mean).toHaveLength(asked.image.embedding.length);
    expect(Object.keys(cal.ood!.bank).sort()).toEqual(['synthetic_derm', 'synthetic_us']);
    // a training image lies within the statistics' reach: a finite score, below the reject line
    const score = assessImage(cal, asked.image.embedding, asked.image.appearance).oodScore!;
    expect(Number.isFinite(score)).toBe(true);
    expect(score).toBeLessThan(cal.thresholds.ood_reject);
  });

  it('refuses k-NN statistics of empty features, and a calibration file whose statistics have none', () => {
    expect(() => fitKnnStats(new Map([['a', Array.from({ length: 5 }, () => new Float32Array(0))]]), [new Float32Array(0)])).toThrow(/features of one non-zero length/);
    const cal = JSON.parse(readFileSync(path.join(MODELS_DIR, 'promptseg-builtin', 'calibration.json'), 'utf8'));
    const r = CalibrationSchema.safeParse({ ...cal, ood: { ...cal.ood, mean: [], std: [] } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(/mean is empty/);
  });

  it('refuses an invalid suite with a message naming the field', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-'));
    const suiteFile = path.join(dir, 'bad.json');
    writeFileSync(suiteFile, JSON.stringify({ name: 'x', data_root: '.', split: 'holdout' }));
    const ctx = createServiceContext(testConfig());
    contexts.push(ctx);
    await expect(evaluateSuite(ctx, { suiteFile, outDir: path.join(dir, 'o') })).rejects.toThrow(/split/);
    writeFileSync(suiteFile, JSON.stringify({ name: 'x', data_root: '.', dice_targets: { skin_lesion: 0.9 } }));
    await expect(evaluateSuite(ctx, { suiteFile, outDir: path.join(dir, 'o') })).rejects.toThrow(/dice_targets.*<dataset>\/<structure slug>/);
  });

  it.skipIf(!!sharedMissing)(`the quick suite over every shared dataset${sharedMissing ? ` (skipped: ${sharedMissing})` : ''}`, { timeout: 180_000 }, async () => {
    const ctx = createServiceContext(testConfig());
    contexts.push(ctx);
    const out = mkdtempSync(path.join(tmpdir(), 'eval-quick-'));
    const r = await evaluateSuite(ctx, { suiteFile: path.join(ROOT, 'eval', 'suites', 'shared-quick.json'), outDir: out });
    const datasets = (JSON.parse(readFileSync(path.join(SHARED_DATA, 'index.json'), 'utf8')) as { id: string }[]).map((d) => d.id);
    expect(new Set(r.summary.structures.map((s) => s.dataset))).toEqual(new Set(datasets));
    expect(r.summary.presence['promptseg-builtin'].n_neg).toBeGreaterThan(0);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('## Presence');
  });
});
