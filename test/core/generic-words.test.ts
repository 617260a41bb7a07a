import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readGenericWord } from '../../src/core/pipeline/generic-words.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { operationByName } from '../../src/service/operation-table.js';
import { runOperation } from '../../src/service/run-operation.js';
import type { SegmentOutput } from '../../src/service/schemas.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { ROOT, SHARED_DATA, sharedMissing } from '../helpers/project.js';
import { testContext } from '../helpers/service.js';

const vocab = Vocabulary.fromProject(ROOT);

describe('generic words (lesion, tumour, mass...)', () => {
  it('are told from structure names: a synonym that is itself a generic word does not settle its meaning, a longer name does', () => {
    expect(vocab.genericWord('lesion')).toBe('lesion');
    expect(vocab.genericWord('segment the tumor')).toBe('tumor');
    expect(vocab.genericWord('where is the mass?')).toBe('mass');
    expect(vocab.genericWord('skin lesion')).toBeUndefined();
    expect(vocab.genericWord('brain tumor')).toBeUndefined();
    expect(vocab.genericWord('pigmented lesion')).toBeUndefined();
    expect(vocab.genericWord('heart')).toBeUndefined();
    expect(vocab.genericWord('segment the lesion in this brain mri')).toBe('lesion');
    expect(vocab.genericWord('please find the abnormality here')).toBe('abnormality');
    // a qualified word names a particular structure, which the model may not know: it is not read as "the finding here"
    expect(vocab.genericWord('thyroid nodule')).toBeUndefined();
    expect(vocab.genericWord('kidney mass')).toBeUndefined();
  });

  it('are read as the finding the model finds present, else by the image\'s nearest training set, else not at all', () => {
    const none = Object.fromEntries(vocab.genericCandidates().map((c) => [c.slug, 0.01]));
    const read = (nearest: string | null, presence: Record<string, number> = none, ood = false) => readGenericWord(vocab, 'lesion', { nearestTrainingSet: nearest, outOfDistribution: ood }, presence);
    expect(vocab.genericCandidates().map((c) => c.slug).sort()).toEqual(['dental_caries', 'flair_abnormality', 'foot_ulcer', 'ground_glass_opacity', 'lung_infection', 'polyp', 'pulmonary_embolism', 'skin_lesion', 'tumor_core', 'whole_tumor']);
    // the model's presence decides, even against the nearest set (an image of one kind that looks like another)
    expect(read('endotect2020_polyp_endoscopy', { ...none, skin_lesion: 0.93, polyp: 0.2 }).resolution).toMatchObject({ code: 'generic_word_resolved', structure: 'skin_lesion', basis: 'model_presence' });
    expect(read('lgg_flair_mri', { ...none, flair_abnormality: 0.97 }).structure?.slug).toBe('flair_abnormality');
    // found nowhere: the nearest set's finding (answered as absent by its own verdict)
    expect(read('lgg_flair_mri').resolution).toMatchObject({ code: 'generic_word_resolved', structure: 'flair_abnormality', basis: 'nearest_training_set' });
    expect(read('ph2_dermoscopy', none, true).resolution.message).toMatch(/less typical/);
    // found nowhere, and the kind of image has no finding: not read
    expect(read('jsrt_scr_cxr').resolution).toMatchObject({ code: 'generic_word_unresolved', structure: null, basis: null });
    expect(read('jsrt_scr_cxr').resolution.message).toMatch(/chest x-ray .* knows no finding a "lesion" could mean/);
    expect(read(null).resolution.code).toBe('generic_word_unresolved');
  });

  it('where the model finds several findings, reads the one of the image\'s nearest training set (the vocabulary of every dataset)', () => {
    const all = Vocabulary.fromProject(ROOT);
    const none = Object.fromEntries(all.genericCandidates().map((c) => [c.slug, 0.01]));
    const read = (nearest: string, presence: Record<string, number>) => readGenericWord(all, 'tumour', { nearestTrainingSet: nearest, outOfDistribution: false }, presence);
    // a post-contrast glioma slice: the FLAIR abnormality and whole tumour are there too, but the word means its core
    const t1c = read('brats2015_deepmedic_t1c', { ...none, flair_abnormality: 0.96, whole_tumor: 0.93, tumor_core: 0.81 });
    expect(t1c.resolution).toMatchObject({ structure: 'tumor_core', basis: 'model_presence' });
    expect(t1c.resolution.message).toMatch(/3 of them are found; this one is the finding of the kind of image/);
    expect(read('brats2015_deepmedic_flair', { ...none, flair_abnormality: 0.96, whole_tumor: 0.93 }).structure?.slug).toBe('whole_tumor');
    // the nearest set's finding not found: the highest presence among those found
    expect(read('lgg_flair_mri', { ...none, whole_tumor: 0.9, tumor_core: 0.7 }).resolution).toMatchObject({ structure: 'whole_tumor', basis: 'model_presence' });
    expect(read('lgg_flair_mri', { ...none, whole_tumor: 0.9, tumor_core: 0.7 }).resolution.message).toMatch(/this one with the highest presence/);
  });

  it('read a shared name ("vessels") by the image too: the retina\'s on a fundus photograph, arteries and veins on a nerve-block ultrasound', async () => {
    const all = Vocabulary.fromProject(ROOT);
    expect(all.genericWord('segment the vessels')).toBe('vessels');
    expect(all.genericWord('blood vessels')).toBe('blood vessels');
    expect(all.genericWord('vessel')).toBe('vessel');
    expect(all.genericWord('retinal vessels')).toBeUndefined(); // named in full: no reading
    expect(all.genericWord('blood vessel')).toBeUndefined();
    expect(all.genericCandidates('vessels').map((c) => c.slug).sort()).toEqual(['blood_vessel', 'retinal_vessels']);
    expect(all.genericCandidates('lesion').map((c) => c.slug)).not.toContain('blood_vessel');
    const read = (nearest: string, presence: Record<string, number>) => readGenericWord(all, 'vessels', { nearestTrainingSet: nearest, outOfDistribution: false }, presence);
    expect(read('usgra_nerve_vessel_us', { retinal_vessels: 0.02, blood_vessel: 0.3 }).resolution).toMatchObject({ structure: 'blood_vessel', basis: 'nearest_training_set' });
    expect(read('drive_fundus', { retinal_vessels: 0.97, blood_vessel: 0.6 }).resolution).toMatchObject({ structure: 'retinal_vessels', basis: 'model_presence' });
    // the scan asks the structures the word can mean, and no others
    const ctx = testContext();
    ctx.pipeline.vocabulary = all;
    const r = await runOperation(ctx, operationByName('segment')!, { image: { base64: (await chestLikePng(256)).toString('base64') }, prompts: ['vessels', 'lesion'] }, { via: 'eval' });
    expect(r.ok).toBe(true);
    const [vessels, lesion] = (r.value as SegmentOutput).results;
    expect(Object.keys(vessels.resolution!.candidates).sort()).toEqual(['blood_vessel', 'retinal_vessels']);
    expect(vessels.resolution!.word).toBe('vessels');
    expect(Object.keys(lesion.resolution!.candidates)).not.toContain('blood_vessel');
    expect(Object.keys(lesion.resolution!.candidates)).toContain('foot_ulcer');
  });

  it('segment answers a generic word on a radiograph with a rejection naming why; generic_words literal sends it as it is', async () => {
    const ctx = testContext();
    const op = operationByName('segment')!;
    const image = { base64: (await chestLikePng(256)).toString('base64') };
    const r = await runOperation(ctx, op, { image, prompts: ['heart', 'lesion'] }, { via: 'eval' });
    expect(r.ok).toBe(true);
    const [heart, lesion] = (r.value as SegmentOutput).results;
    expect(heart.resolution).toBeUndefined();
    expect(heart.structure?.slug).toBe('heart');
    // this drawing is out of distribution: the word is either not read, or read as a finding whose
    // answer is rejected for that reason (the all-datasets network finds a whole tumour here at 58%)
    expect(lesion.verdict).toBe('reject');
    expect(lesion.resolution?.word).toBe('lesion');
    expect(Object.keys(lesion.resolution!.candidates)).toHaveLength(10);
    if (lesion.resolution!.code === 'generic_word_unresolved') {
      expect(lesion.mask_produced).toBe(false);
      expect(lesion.reasons.map((x) => x.code)).toEqual(['generic_word_unresolved']);
    } else {
      expect(lesion.reasons.filter((x) => x.severity === 'reject').map((x) => x.code)).toEqual(['out_of_distribution']);
      expect(lesion.resolution!.message).toMatch(/less typical of its kind/);
    }
    const literal = (await runOperation(ctx, op, { image, prompts: ['lesion'], generic_words: 'literal' }, { via: 'eval' })).value as SegmentOutput;
    expect(literal.results[0].resolution).toBeUndefined();
    expect(literal.results[0].structure?.slug).toBe('skin_lesion');
  }, 30_000);

  it.skipIf(sharedMissing)('on a dermoscopy image and a colonoscopy frame, "lesion" draws the same mask as the finding\'s vocabulary name', async () => {
    const ctx = testContext();
    const op = operationByName('segment')!;
    for (const [ds, slug] of [['ph2_dermoscopy', 'skin_lesion'], ['endotect2020_polyp_endoscopy', 'polyp']]) {
      const name = vocab.bySlug.get(slug)!.name; // the name a resolved word is asked by
      const file = readdirSync(path.join(SHARED_DATA, ds, 'images')).sort()[0];
      const image = { base64: readFileSync(path.join(SHARED_DATA, ds, 'images', file)).toString('base64') };
      const out = (await runOperation(ctx, op, { image, prompts: [name, 'lesion'], outputs: ['rle'] }, { via: 'eval' })).value as SegmentOutput;
      const [byName, byWord] = out.results;
      expect(byWord.resolution?.code, ds).toBe('generic_word_resolved');
      expect(byWord.structure?.slug).toBe(byName.structure?.slug);
      expect(byWord.rle).toEqual(byName.rle);
    }
  }, 60_000);
});
