import { describe, expect, it } from 'vitest';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { ROOT } from '../helpers/project.js';

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
    expect(v.list('ultrasound').map((s) => s.slug)).toEqual(['fetal_head']);
    expect(v.modalities()).toContain('xray');
  });
});
