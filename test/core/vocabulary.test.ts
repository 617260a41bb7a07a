import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { modalitiesOf, normalizePrompt, Vocabulary } from '../../src/core/vocabulary.js';
import { ROOT, SHARED_DATA, sharedMissing } from '../helpers/project.js';

describe('structure vocabulary', () => {
  const v = Vocabulary.fromProject(ROOT);

  it('matches the longest phrase so "left lung" is not read as "lungs"', () => {
    expect(v.match('segment the left lung in this chest x-ray')?.slug).toBe('left_lung');
    expect(v.match('Where is the LUNG?')?.slug).toBe('lungs');
    expect(v.match('left atrial blood pool')?.slug).toBe('left_atrium');
  });

  it('matches synonyms and held-out evaluation synonyms, and nothing in nonsense', () => {
    expect(v.match('cardiac silhouette')?.slug).toBe('heart');
    expect(v.match('patient left lung')?.slug).toBe('left_lung');
    expect(v.match('banana')).toBeUndefined();
    expect(v.match('hello world')).toBeUndefined();
  });

  it('keeps evaluation-only phrasings out of the training synonyms', () => {
    for (const s of v.data.structures) for (const e of s.eval_synonyms) expect(s.synonyms).not.toContain(e);
    for (const t of v.data.templates.eval) expect(v.data.templates.train).not.toContain(t);
  });

  it('lists structures by modality', () => {
    expect(v.list('ultrasound').map((s) => s.slug)).toEqual(['fetal_head', 'nerve', 'blood_vessel']);
    expect(v.modalities()).toContain('xray');
  });
});

describe('the vocabulary of every medseg2d dataset (prompts/vocabulary.json, make_vocabulary.py)', () => {
  const v = Vocabulary.fromProject(ROOT);

  it('covers 36 structures of 21 datasets, each phrase naming one structure', () => {
    expect(v.data.structures).toHaveLength(36);
    expect(v.data.datasets).toHaveLength(21);
    const owner = new Map<string, string>();
    for (const s of v.data.structures) {
      for (const p of [s.name, s.slug.replace(/_/g, ' '), ...s.synonyms, ...s.eval_synonyms]) {
        const n = normalizePrompt(p.replace(/'s\b/g, ''));
        expect(owner.get(n) ?? s.slug, `"${p}"`).toBe(s.slug);
        owner.set(n, s.slug);
      }
      for (const e of s.eval_synonyms) expect(s.synonyms).not.toContain(e);
    }
    // "cardiac silhouette" stays the heart's; the cardiomediastinum is asked for by its own names
    expect(v.match('cardiac silhouette')?.slug).toBe('heart');
    expect(v.match('cardiomediastinal silhouette')?.slug).toBe('cardiomediastinum');
    expect(v.match('blood vessel')?.slug).toBe('blood_vessel');
    expect(v.match('retinal blood vessels')?.slug).toBe('retinal_vessels');
  });

  it('nests tumour sub-regions and the cup in the disc, with no laterality', () => {
    const chain = (slug: string): string[] => { const p = v.bySlug.get(slug)!.parent; return p ? [p, ...chain(p)] : []; };
    expect(chain('enhancing_tumor')).toEqual(['tumor_core', 'whole_tumor']);
    expect(chain('necrotic_tumor_core')).toEqual(['tumor_core', 'whole_tumor']);
    expect(chain('peritumoral_edema')).toEqual(['whole_tumor']);
    expect(chain('optic_cup')).toEqual(['optic_disc']);
    for (const s of ['optic_disc', 'optic_cup', 'whole_tumor', 'vertebral_body', 'nerve']) expect(v.bySlug.get(s)!.laterality).toBeNull();
    for (const s of v.data.structures) if (s.parent) expect(v.bySlug.has(s.parent), s.parent).toBe(true);
  });

  it('lets one structure be labelled in two modalities', () => {
    const ggo = v.bySlug.get('ground_glass_opacity')!;
    expect(ggo.datasets).toEqual(['covid19_ct_infection_medseg', 'gb_covid_cxr']);
    expect(modalitiesOf(ggo)).toEqual(['ct', 'xray']);
    expect(v.list('xray').map((s) => s.slug)).toEqual(expect.arrayContaining(['consolidation', 'ground_glass_opacity', 'left_lung', 'cardiomediastinum']));
    expect(v.list('ct').map((s) => s.slug)).toContain('consolidation');
    expect(v.modalities()).toEqual(expect.arrayContaining(['photograph', 'fundus', 'mri', 'ultrasound']));
  });

  it('asks for absent structures only where the images cannot show them', () => {
    const chest = v.absentCandidates('covid19_ct_infection_medseg').map((s) => s.slug);
    expect(chest).not.toContain('vertebral_body'); // chest CT shows the spine, unlabelled
    expect(chest).not.toContain('airways');         // same region
    expect(chest).toContain('optic_disc');
    for (const d of v.data.datasets) {
      const slugs = v.absentCandidates(d.id).map((s) => s.slug);
      expect(slugs).not.toContain('blood_vessel');
      expect(slugs).not.toContain('nerve');
      for (const own of d.structures) expect(slugs).not.toContain(own);
    }
    expect(v.absentCandidates('drive_fundus').map((s) => s.slug)).not.toContain('optic_disc');
    expect(v.absentCandidates('lgg_flair_mri').map((s) => s.slug)).not.toContain('whole_tumor');
  });

  it('asks a dataset it does not list for absent structures of other modalities and regions only', () => {
    // a vocabulary that does not list the newer medseg2d sets (as the generalist's training one, make_vocabulary.py --generalist): their images show its structures unlabelled
    const newer = ['drishti_gs1_optic_disc_cup', 'brats2015_deepmedic_t1c', 'brats2015_deepmedic_flair', 'gb_covid_cxr', 'lumbar_vb_mri_chu', 'fuseg_foot_ulcer', 'usgra_nerve_vessel_us'];
    const older = new Vocabulary({ ...v.data, datasets: v.data.datasets.filter((d) => !newer.includes(d.id)), structures: v.data.structures.filter((s) => s.datasets.some((d) => !newer.includes(d))) });
    const slugs = (d: { id: string; modality: string; structures: string[] }) => older.absentFor(d).map((s) => s.slug);
    const covidCxr = slugs({ id: 'gb_covid_cxr', modality: 'xray', structures: ['left_lung', 'right_lung', 'cardiomediastinum'] });
    for (const s of ['left_lung', 'heart', 'lungs', 'left_clavicle', 'dental_caries']) expect(covidCxr).not.toContain(s);
    expect(covidCxr).toContain('skin_lesion');
    const drishti = slugs({ id: 'drishti_gs1_optic_disc_cup', modality: 'fundus', structures: ['optic_disc', 'optic_cup'] });
    expect(drishti).not.toContain('retinal_vessels');
    expect(drishti).toContain('polyp');
    expect(slugs({ id: 'brats2015_deepmedic_flair', modality: 'mri', structures: ['whole_tumor'] })).not.toContain('flair_abnormality');
    // a listed training set keeps the training rule
    expect(slugs({ id: 'jsrt_scr_cxr', modality: 'xray', structures: [] })).toEqual(older.absentCandidates('jsrt_scr_cxr').map((s) => s.slug));
  });

  it.skipIf(sharedMissing)('names every structure of every medseg2d dataset, with the datasets that label it', () => {
    const index = JSON.parse(readFileSync(path.join(SHARED_DATA, 'index.json'), 'utf8')) as { id: string }[];
    expect(v.data.datasets.map((d) => d.id).sort()).toEqual(index.map((d) => d.id).sort());
    for (const { id } of index) {
      const meta = JSON.parse(readFileSync(path.join(SHARED_DATA, id, 'dataset.json'), 'utf8')) as { modality: string; structures: { slug: string }[] };
      for (const s of meta.structures) {
        const st = v.bySlug.get(s.slug);
        expect(st?.datasets, `${id}/${s.slug}`).toContain(id);
        expect(modalitiesOf(st!)).toContain(meta.modality);
      }
    }
  });

  it('reads generic words on the new datasets as their findings', () => {
    expect(v.genericMeaning('brats2015_deepmedic_flair')?.slug).toBe('whole_tumor');
    expect(v.genericMeaning('fuseg_foot_ulcer')?.slug).toBe('foot_ulcer');
    expect(v.genericMeaning('lumbar_vb_mri_chu')).toBeUndefined();
    expect(v.genericWord('segment the tumour')).toBe('tumour');
  });
});
