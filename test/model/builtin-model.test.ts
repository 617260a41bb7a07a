import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { RasterImage } from '../../src/core/image/raster.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { calibrationFor, probabilityMap, segment } from '../../src/core/pipeline/segment.js';
import { dice } from '../../src/eval/metrics.js';
import { disposeServiceContext } from '../../src/service/context.js';
import { nonMedicalImages } from '../../src/eval/ood-probe.js';
import { ROOT, SHARED_DATA, sharedMissing } from '../helpers/project.js';
import { testContext } from '../helpers/service.js';
import { drawnChestRadiographPng } from '../helpers/fixtures.js';
import { networksBySet } from '../../src/core/pipeline/image-routing.js';
import { lnDistanceToSets, logit, platt, presenceProbability, type OodStats } from '../../src/core/trust/calibration.js';
import { fitKnnStats } from '../../src/eval/calibrate.js';
import { answeringSpecialist } from '../../src/core/models/manifest.js';
import { EXTRA_PASS_MIN_PRESENCE } from '../../src/core/pipeline/passes/pass.js';

const ctx = testContext();
afterAll(() => disposeServiceContext(ctx));
/** The share of made-up non-medical images that must be flagged (the issue's target is 0.95; see the model card for the measured rate). */
const OOD_BAR = 0.95;
const limits = { maxPixels: 40_000_000 };

async function sharedCase(ds: string, c: string, ext = '.png') {
  const image = await decodeImage(readFileSync(path.join(SHARED_DATA, ds, 'images', c + ext)), limits);
  const mask = async (slug: string) => {
    const { data } = await sharp(path.join(SHARED_DATA, ds, 'masks', slug, c + '.png')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    return Uint8Array.from(data, (v) => (v > 127 ? 1 : 0));
  };
  return { image, mask };
}
/** Segments the image twice with the feature and text caches emptied in between; presence, mask and probabilities must match to the bit. */
async function expectIdenticalRuns(image: Awaited<ReturnType<typeof decodeImage>>, prompts: string[]) {
  const a = await segment(ctx.pipeline, { image, prompts });
  ctx.pipeline.featureCache.clear();
  ctx.pipeline.textCache.clear();
  const b = await segment(ctx.pipeline, { image, prompts });
  prompts.forEach((p, i) => {
    expect(b.results[i].presence, p).toBe(a.results[i].presence);
    expect(Buffer.from(b.results[i].mask).equals(Buffer.from(a.results[i].mask)), p).toBe(true);
    expect(Buffer.from(probabilityMap(b.results[i]).buffer).equals(Buffer.from(probabilityMap(a.results[i]).buffer)), p).toBe(true);
  });
}
/** The extension of a shared case's image file (PNG or JPEG, as the dataset stores it). */
const imageExt = (ds: string, c: string): string => ['.png', '.jpg'].find((e) => existsSync(path.join(SHARED_DATA, ds, 'images', c + e)))!;
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

  it('takes a second, closer look at a small structure (cardiac MRI) and keeps it on the structure', async () => {
    for (const c of testCases('acdc_cardiac_mri', 6)) {
      const { image, mask } = await sharedCase('acdc_cardiac_mri', c);
      const gt = await mask('left_ventricle');
      if (!gt.some((v) => v)) continue;
      // the specialist off: the ACDC U-Net redraws the left ventricle from the whole image where calibration chose it
      const off = await segment(ctx.pipeline, { image, prompts: ['left ventricle'], zoom: false, specialist: false });
      const on = await segment(ctx.pipeline, { image, prompts: ['left ventricle'], zoom: true, specialist: false });
      expect(off.results[0].zoomed).toBeUndefined();
      expect(on.results[0].zoomed).toBe(true);
      expect(dice(on.results[0].mask, gt)).toBeGreaterThan(0.6);
      return;
    }
    throw new Error('no ACDC test case with a left ventricle among the first six');
  });

  // every structure a shipped specialist draws, with its canonical name and its dataset from the vocabulary
  const vocabulary = JSON.parse(readFileSync(path.join(ROOT, 'prompts', 'vocabulary.json'), 'utf8')) as { structures: { slug: string; name: string; datasets: string[] }[] };
  // (a task-specific network's cases come from its own training set: it redraws the lungs only on images routed there)
  const casesOf = (specialists: { name: string; structures: string[]; training?: Record<string, unknown> }[]) =>
    specialists.flatMap((sp) =>
      sp.structures.map((slug) => {
        const v = vocabulary.structures.find((x) => x.slug === slug)!;
        const trainedOn = sp.training?.dataset;
        return { specialist: sp.name, structure: slug, dataset: typeof trainedOn === 'string' ? trainedOn : v.datasets[0], prompt: v.name };
      }),
    );
  const shippedSpecialists = ctx.pipeline.registry.entry('promptseg-builtin').specialists ?? [];
  const specialistCases = casesOf(shippedSpecialists.filter((sp) => !sp.own_presence));
  const taskNets = new Set(shippedSpecialists.filter((sp) => sp.task_net).map((sp) => sp.name));
  // redraws the model card calls below use, as specialist/structure: the FUMPE U-Net draws nothing on the test patient
  // (test Dice 0.000; 0.231 on the val patient, which calibration chose it on); the COVID-19 CT U-Net's consolidation
  // is 0.49 on test and the COVID-19 radiograph U-Net's opacities 0.31 / 0.02 (calibration keeps the first look
  // there); the DC1000 U-Net's caries are 0.56 on test as served, the best of both models and still below the bar; these redraws
  // are checked to run, keep the first look's presence and differ from it, not to reach the Dice bar
  const belowUse = new Set(['ct-pulmonary-angiography-unet/pulmonary_embolism', 'ct-covid-infection-unet/consolidation', 'covid-radiograph-unet/ground_glass_opacity', 'covid-radiograph-unet/consolidation', 'dental-caries-unet/dental_caries']);
  const chestDatasets = new Set(['jsrt_scr_cxr', 'covid19_ct_infection_medseg', 'gb_covid_cxr']);
  it('has a specialist for the structures the model card names (membranes, polyp, left atrium, foot ulcer; the optic disc and cup: the Drishti-GS1 U-Net; the JSRT, ACDC, FUMPE, COVID-19 CT, COVID-19 radiograph, DRIVE, lumbar spine, DC1000 and MoNuSeg structures: their U-Nets)', () => {
    expect(specialistCases.map((c) => c.structure).sort()).toEqual(['airways', 'cardiomediastinum', 'cell_membranes', 'cell_nuclei', 'consolidation', 'consolidation', 'dental_caries', 'foot_ulcer', 'ground_glass_opacity', 'ground_glass_opacity', 'heart', 'left_atrium', 'left_clavicle', 'left_lung', 'left_lung', 'left_ventricle', 'lung_infection', 'lungs', 'myocardium', 'optic_cup', 'optic_disc', 'polyp', 'pulmonary_embolism', 'retinal_vessels', 'right_clavicle', 'right_lung', 'right_lung', 'right_ventricle', 'vertebral_body']);
    expect([...taskNets].sort()).toEqual(['cardiac-mri-unet', 'chest-radiograph-unet', 'covid-radiograph-unet', 'ct-covid-infection-unet', 'ct-pulmonary-angiography-unet', 'dental-caries-unet', 'histology-nuclei-unet', 'lumbar-spine-unet', 'optic-nerve-head-unet', 'retinal-vessels-unet']);
  });

  // the structures of the newer datasets: a network trained on all of them answers for them altogether
  const ownCases = casesOf(shippedSpecialists.filter((sp) => sp.own_presence));
  it('answers for every structure of the vocabulary the generalist was not trained on with the all-datasets network', () => {
    const generalist = new Set(vocabulary.structures.filter((v) => !ownCases.some((c) => c.structure === v.slug)).map((v) => v.slug));
    expect(generalist.size).toBe(23);
    expect(ownCases.map((c) => c.structure).sort()).toEqual(['airways', 'blood_vessel', 'cardiomediastinum', 'enhancing_tumor', 'foot_ulcer', 'necrotic_tumor_core', 'nerve', 'optic_cup', 'optic_disc', 'peritumoral_edema', 'tumor_core', 'vertebral_body', 'whole_tumor']);
  });
  for (const sc of ownCases.filter((c) => ['optic_disc', 'vertebral_body', 'cardiomediastinum'].includes(c.structure))) {
    it(`answers for ${sc.structure} with the ${sc.specialist} network (presence; the mask too, unless a specialist redraws it) whatever the request's specialist choice, and rejects it on a fetal ultrasound`, async () => {
      const c = testCases(sc.dataset, 1)[0];
      const ext = imageExt(sc.dataset, c);
      const { image, mask } = await sharedCase(sc.dataset, c, ext);
      const gt = await mask(sc.structure);
      const off = await segment(ctx.pipeline, { image, prompts: [sc.prompt], specialist: false, ttaImage: 0 });
      const on = await segment(ctx.pipeline, { image, prompts: [sc.prompt, 'heart'], ttaImage: 0 });
      expect(off.results[0].specialist).toBe(sc.specialist);
      expect(off.results[0].answeredBy).toBe(sc.specialist);
      expect(on.results[0].answeredBy).toBe(sc.specialist);
      expect(on.results[1].answeredBy).toBeUndefined(); // a structure of the generalist's, in the same request
      expect(on.results[1].specialist).toBeUndefined();
      expect(on.results[0].presence).toBe(off.results[0].presence);
      expect(on.results[0].verdict).not.toBe('reject');
      expect(dice(on.results[0].mask, gt)).toBeGreaterThan(0.7);
      const us = await sharedCase('hc18_fetal_head_us', testCases('hc18_fetal_head_us', 1)[0], '.jpg');
      const absent = await segment(ctx.pipeline, { image: us.image, prompts: [sc.prompt] });
      expect(absent.results[0].specialist).toBe(sc.specialist); // too absent for a redrawing specialist to run
      expect(absent.results[0].verdict).toBe('reject');
      expect(absent.results[0].maskProduced).toBe(false);
    });
  }
  it("answers for a COVID-19 radiograph's lungs and ground-glass opacity with the all-datasets network (the image lies nearest that set of those labelling them), and for a clean radiograph's lungs with the generalist", async () => {
    for (const c of testCases('gb_covid_cxr', 3)) {
      const { image, mask } = await sharedCase('gb_covid_cxr', c);
      const r = await segment(ctx.pipeline, { image, prompts: ['left lung', 'right lung', 'ground-glass opacity', 'heart'] });
      expect(r.results.slice(0, 3).map((x) => x.specialist), c).toEqual(['all-datasets', 'all-datasets', 'all-datasets']);
      expect(r.results[3].specialist, 'the heart: one network answers for it everywhere').toBeUndefined();
      expect(dice(r.results[0].mask, await mask('left_lung')), c).toBeGreaterThan(0.8);
      expect(dice(r.results[1].mask, await mask('right_lung')), c).toBeGreaterThan(0.8);
      // its presence is scaled by the all-datasets network's own fit (with how near the image lies to the lungs' sets), not the generalist's
      const own = calibrationFor(ctx.pipeline, ctx.pipeline.registry.entry('promptseg-builtin'))!;
      const near = lnDistanceToSets(r.image.embedding, own.ood!, ctx.pipeline.vocabulary.bySlug.get('left_lung')!.datasets);
      expect(r.results[0].presence).toBeCloseTo(presenceProbability(logit(r.results[0].presenceRaw), own.specialist_scores!['all-datasets'].presence, near), 9);
      expect(r.results[0].presence).not.toBeCloseTo(platt(logit(r.results[0].presenceRaw), own.presence), 3);
      // with raw scores the same network answers (which network is a property of the image, not of the scores)
      const raw = await segment(ctx.pipeline, { image, prompts: ['left lung'], calibrated: false });
      expect(raw.results[0].specialist).toBe('all-datasets');
      expect(raw.results[0].presenceRaw).toBe(r.results[0].presenceRaw);
    }
    const cxr = await sharedCase('jsrt_scr_cxr', testCases('jsrt_scr_cxr', 1)[0]);
    const clean = await segment(ctx.pipeline, { image: cxr.image, prompts: ['left lung'] });
    expect(clean.results[0].specialist).toBeUndefined();
    expect(dice(clean.results[0].mask, await cxr.mask('left_lung'))).toBeGreaterThan(0.9);
  });
  it("weighs, in the all-datasets network's presence, how near the image lies to the sets that label the structure: an optic disc is found on a fundus photograph and not on a CT its own presence scores as likely", async () => {
    const own = calibrationFor(ctx.pipeline, ctx.pipeline.registry.entry('promptseg-builtin'))!;
    const scaling = own.specialist_scores!['all-datasets'].presence;
    expect(scaling.near, 'the fit weighs nearness: the farther, the less present').toBeLessThan(0);
    const sets = ctx.pipeline.vocabulary.bySlug.get('optic_disc')!.datasets;
    const ct = await sharedCase('ct_pulmonary_embolism_fumpe', 'PAT035_069');
    const onCt = await segment(ctx.pipeline, { image: ct.image, prompts: ['optic disc'] });
    const nearCt = lnDistanceToSets(onCt.image.embedding, own.ood!, sets);
    expect(onCt.results[0].specialist, 'no redraw for a disc served as absent').toBe('all-datasets');
    // by its presence logit alone this CT slice has an optic disc; its distance from every fundus photograph says otherwise
    expect(onCt.results[0].presenceRaw).toBeGreaterThan(0.9);
    expect(onCt.results[0].presence).toBeCloseTo(presenceProbability(logit(onCt.results[0].presenceRaw), scaling, nearCt), 9);
    expect(onCt.results[0].verdict).toBe('reject');
    expect(onCt.results[0].maskProduced).toBe(false);
    const fundus = await sharedCase('drishti_gs1_optic_disc_cup', testCases('drishti_gs1_optic_disc_cup', 1)[0], '.jpg');
    const onFundus = await segment(ctx.pipeline, { image: fundus.image, prompts: ['optic disc'] });
    expect(lnDistanceToSets(onFundus.image.embedding, own.ood!, sets)).toBeLessThan(nearCt - 1);
    expect(onFundus.results[0].presence).toBeGreaterThan(0.9);
    expect(onFundus.results[0].specialist, 'the calibration chose the Drishti-GS1 U-Net to redraw the disc').toBe('optic-nerve-head-unet');
    expect(dice(onFundus.results[0].mask, await fundus.mask('optic_disc'))).toBeGreaterThan(0.8);
  });
  for (const sc of specialistCases) {
    it(`redraws ${sc.structure} with the ${sc.specialist} specialist, keeping the first look's presence, and not for an image without them`, async () => {
      // asked by name: where several specialists may redraw a structure, the request picks this one
      const ask = { specialist: true, specialistNames: { [sc.structure]: sc.specialist } };
      const below = belowUse.has(`${sc.specialist}/${sc.structure}`);
      // the first test case (with the structure drawn) that the specialist redraws: a task-specific network redraws only
      // images routed to the network that answers on its training set's (a JSRT radiograph may lie nearest the COVID-19
      // ones, where the all-datasets network answers for the lungs and the chest U-Net does not redraw them)
      let picked: { image: RasterImage; mask: (slug: string) => Promise<Uint8Array>; off: Awaited<ReturnType<typeof segment>>; on: Awaited<ReturnType<typeof segment>> } | undefined;
      for (const c of testCases(sc.dataset, 9)) {
        const ext = imageExt(sc.dataset, c);
        const { image, mask } = await sharedCase(sc.dataset, c, ext);
        if (!(await mask(sc.structure)).some((v) => v)) continue;
        const off = await segment(ctx.pipeline, { image, prompts: [sc.prompt], specialist: false, ttaImage: 0 });
        const on = await segment(ctx.pipeline, { image, prompts: [sc.prompt], ...ask, ttaImage: 0 });
        if (on.results[0].specialist === sc.specialist) {
          picked = { image, mask, off, on };
          break;
        }
        expect(on.results[0].specialist, `${c}: drawn by ${off.results[0].specialist ?? "the model's own"} network, not redrawn`).toBe(off.results[0].specialist);
      }
      expect(picked, `a test case of ${sc.dataset} whose ${sc.structure} the ${sc.specialist} specialist redraws`).toBeDefined();
      const { image, mask, off, on } = picked!;
      const gt = await mask(sc.structure);
      // the network that drew the first look: the model's own, or one that answers for the structure altogether or on this kind of image
      const answering = answeringSpecialist(ctx.pipeline.registry.entry('promptseg-builtin'), sc.structure)?.name;
      if (answering) expect(on.results[0].answeredBy).toBe(answering);
      expect(on.results[0].answeredBy).toBe(off.results[0].specialist);
      expect(on.results[0].presence).toBe(off.results[0].presence);
      expect(dice(on.results[0].mask, off.results[0].mask)).toBeLessThan(0.999);
      if (!below) expect(dice(on.results[0].mask, gt)).toBeGreaterThan(0.7);
      // image TTA copies of a redrawn prompt are drawn by the specialist too and keep the first look's presence;
      // a task-specific network's mask is its own: no copies through it
      const onTta = await segment(ctx.pipeline, { image, prompts: [sc.prompt], ...ask, ttaImage: 2 });
      expect(onTta.results[0].specialist).toBe(sc.specialist);
      expect(onTta.results[0].presence).toBe(off.results[0].presence);
      if (taskNets.has(sc.specialist)) {
        expect(onTta.tta?.imageTransforms).toEqual([]);
        expect(Array.from(onTta.results[0].mask)).toEqual(Array.from(on.results[0].mask));
      } else expect(dice(onTta.results[0].mask, on.results[0].mask)).toBeLessThan(1);
      if (!below) expect(dice(onTta.results[0].mask, gt)).toBeGreaterThan(0.7);
      // asked of a chest X-ray (a fetal ultrasound for the chest's structures: a radiograph may show opacities), the
      // first look finds no such structure: the prompt is rejected with an empty mask
      const elsewhere = chestDatasets.has(sc.dataset) ? 'hc18_fetal_head_us' : 'jsrt_scr_cxr';
      const otherCase = testCases(elsewhere, 1)[0];
      const other = await sharedCase(elsewhere, otherCase, imageExt(elsewhere, otherCase));
      const absent = await segment(ctx.pipeline, { image: other.image, prompts: [sc.prompt], ...ask });
      expect(absent.results[0].maskProduced).toBe(false);
      expect(absent.results[0].verdict).toBe('reject');
      // the presence the response gives (for the all-datasets network, weighing the image's distance to its sets)
      // decides whether the specialist runs: below EXTRA_PASS_MIN_PRESENCE it does not, and the result names the
      // network of the first look (for the lungs, the network of the set the image lies nearest); a borderline
      // presence, still rejected, is redrawn
      const absentOff = await segment(ctx.pipeline, { image: other.image, prompts: [sc.prompt], specialist: false });
      expect(absent.results[0].presence).toBe(absentOff.results[0].presence);
      if (absent.results[0].presence < EXTRA_PASS_MIN_PRESENCE) expect(absent.results[0].specialist).toBe(absentOff.results[0].specialist);
      else expect(absent.results[0].specialist).toBe(sc.specialist);
      expect(absentOff.results[0].specialist).not.toBe(sc.specialist);
    });
  }

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
    await expectIdenticalRuns(image, ['fetal head']);
  });
});

describe('built-in model on a drawn chest radiograph (images made by code; runs without ../shared)', () => {
  const sizes: Array<[number, number]> = [[256, 256], [320, 280]];
  const sideShare = (mask: Uint8Array, width: number, right: boolean) => {
    let on = 0, all = 0;
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      all++;
      if (i % width >= width / 2 === right) on++;
    }
    return on / all;
  };

  it("puts the patient's left lung on the image's right and the right lung on the image's left, the heart left of the midline", async () => {
    for (const [w, h] of sizes) {
      const image = await decodeImage(await drawnChestRadiographPng(w, h), limits);
      const r = await segment(ctx.pipeline, { image, prompts: ['left lung', 'right lung', 'heart'] });
      const [left, right, heart] = r.results;
      expect(left.maskProduced && right.maskProduced && heart.maskProduced, `${w}x${h}`).toBe(true);
      expect(sideShare(left.mask, w, true), `left lung on the image's right, ${w}x${h}`).toBeGreaterThan(0.9);
      expect(sideShare(right.mask, w, false), `right lung on the image's left, ${w}x${h}`).toBeGreaterThan(0.9);
      expect(heart.stats.centroid![0]).toBeGreaterThan(w / 2); // the heart shadow sits to the patient's left
    }
  });

  it('returns no mask and a reject for absent structures and nonsense', async () => {
    const absent = ['liver', 'fetal head', 'polyp', 'retinal blood vessels', 'left ventricle', 'banana', 'hello world', 'asdf'];
    for (const [w, h] of sizes) {
      const image = await decodeImage(await drawnChestRadiographPng(w, h), limits);
      const r = await segment(ctx.pipeline, { image, prompts: absent });
      for (const res of r.results) {
        expect(res.maskProduced, `"${res.prompt}" on ${w}x${h}`).toBe(false);
        expect(res.mask.some((v) => v !== 0)).toBe(false);
        expect(res.verdict).toBe('reject');
      }
    }
  });

  it('gives identical outputs for identical inputs, with the caches emptied in between', async () => {
    await expectIdenticalRuns(await decodeImage(await drawnChestRadiographPng(256, 256), limits), ['left lung', 'heart']);
  });

  it('asks the network of the training set the image lies nearest, among those labelling the structure, for a structure two networks answer for', async () => {
    const entry = ctx.pipeline.registry.entry('promptseg-builtin');
    const lung = ctx.pipeline.vocabulary.bySlug.get('left_lung')!;
    const bySet = networksBySet(entry, lung)!;
    expect(bySet.get('jsrt_scr_cxr')).toBe('');
    expect(bySet.get('gb_covid_cxr')).toBe('all-datasets');
    expect(networksBySet(entry, ctx.pipeline.vocabulary.bySlug.get('heart'))).toBeUndefined(); // labelled by the generalist's sets alone
    expect(networksBySet(entry, ctx.pipeline.vocabulary.bySlug.get('optic_disc'))).toBeUndefined(); // the all-datasets network's everywhere
    // every set the manifest routes by is a training set of the vocabulary (a misspelt one would silently route nothing)
    const sets = new Set(ctx.pipeline.vocabulary.data.datasets.map((d) => d.id));
    for (const sp of entry.specialists ?? []) for (const d of sp.image_sets ?? []) expect(sets.has(d), d).toBe(true);
    // statistics made up around this image's own embedding: near one set's bank, far from the other's
    const image = await decodeImage(await drawnChestRadiographPng(256, 256), limits);
    const e = (await segment(ctx.pipeline, { image, prompts: [] })).image.embedding;
    const around = (shift: number) => Array.from({ length: 6 }, (_, k) => Float32Array.from(e, (v, i) => v + shift + 0.01 * Math.sin(k * 7 + i)));
    const stats = (banks: [string, number][]): OodStats => fitKnnStats(new Map(banks.map(([set, shift]) => [set, around(shift)])), [e]);
    const asked = async (s: OodStats) => (await segment(ctx.pipeline, { image, prompts: ['left lung', 'right lung', 'heart'], nearestSetStatistics: s })).results;
    const covid = await asked(stats([['gb_covid_cxr', 0], ['jsrt_scr_cxr', 3], ['hc18_fetal_head_us', -3]]));
    expect(covid.map((r) => r.specialist)).toEqual(['all-datasets', 'all-datasets', undefined]);
    const clean = await asked(stats([['jsrt_scr_cxr', 0], ['gb_covid_cxr', 3], ['hc18_fetal_head_us', -3]]));
    expect(clean.map((r) => r.specialist)).toEqual([undefined, undefined, undefined]);
    // the nearest of the sets that label the lungs decides, whatever other set lies nearer still
    const among = await asked(stats([['hc18_fetal_head_us', 0], ['gb_covid_cxr', 1], ['jsrt_scr_cxr', 3]]));
    expect(among[0].specialist).toBe('all-datasets');
    // the two networks draw different masks, each with its own scores
    expect(covid[0].presenceRaw).not.toBe(clean[0].presenceRaw);
    expect(dice(covid[0].mask, clean[0].mask)).toBeLessThan(1);
  });
});

describe('out-of-distribution images made by code', () => {
  const cal = () => ctx.pipeline.registry.entry('promptseg-builtin').calibration;
  // the same probe the eval report runs (src/eval/ood-probe.ts): noise, gradients, patterns, text pages, scenes
  it.skipIf(!cal())('flags non-medical images made by code (noise, gradients, patterns, rendered text, scenes) as out of distribution', async () => {
    const probe = await nonMedicalImages(4, 11);
    let flagged = 0;
    const missed: string[] = [];
    for (const p of probe) {
      const image = await decodeImage(p.png, limits);
      const r = await segment(ctx.pipeline, { image, prompts: ['heart'] });
      if (r.image.outOfDistribution) flagged++;
      else missed.push(p.kind);
    }
    expect(flagged / probe.length, `missed: ${missed.join(', ')}`).toBeGreaterThanOrEqual(OOD_BAR);
  });
});
