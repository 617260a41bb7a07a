import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { answeringSpecialist, ManifestSchema, redrawingSpecialist } from '../../src/core/models/manifest.js';
import { MODELS_DIR } from '../helpers/project.js';

describe('model manifest', () => {
  const shipped = () => JSON.parse(readFileSync(path.join(MODELS_DIR, 'manifest.json'), 'utf8'));

  it('accepts the shipped manifest, whose all-datasets network routes by image sets', () => {
    const m = ManifestSchema.parse(shipped());
    const all = m.models.find((e) => e.id === 'promptseg-builtin')?.specialists?.find((sp) => sp.own_presence);
    expect(all?.image_sets).toContain('gb_covid_cxr');
  });

  it('tells the specialist that answers for a structure from the one that redraws its mask (vertebral bodies and the optic disc: both; a polyp and the heart: the second only; the fetal head: neither)', () => {
    const e = ManifestSchema.parse(shipped()).models.find((x) => x.id === 'promptseg-builtin')!;
    expect(answeringSpecialist(e, 'vertebral_body')?.name).toBe('all-datasets');
    expect(redrawingSpecialist(e, 'vertebral_body')?.name).toBe('lumbar-spine-unet');
    expect(answeringSpecialist(e, 'optic_disc')?.name).toBe('all-datasets');
    expect(redrawingSpecialist(e, 'optic_disc')?.name).toBe('optic-nerve-head-unet');
    expect(redrawingSpecialist(e, 'optic_disc')?.task_net?.file).toBe('task_net.optic-nerve-head-unet.onnx');
    expect(answeringSpecialist(e, 'heart')).toBeUndefined();
    expect(redrawingSpecialist(e, 'heart')?.name).toBe('chest-radiograph-unet');
    expect(answeringSpecialist(e, 'fetal_head')).toBeUndefined();
    expect(redrawingSpecialist(e, 'fetal_head')).toBeUndefined();
    expect(answeringSpecialist(e, 'polyp')).toBeUndefined();
    expect(redrawingSpecialist(e, 'polyp')?.name).toBe('polyp');
    expect(redrawingSpecialist(e, undefined)).toBeUndefined();
  });

  it('refuses image sets on a specialist that does not answer for its structures altogether, naming it', () => {
    const m = shipped();
    const sp = m.models.find((e: { id: string }) => e.id === 'promptseg-builtin').specialists.find((s: { name: string }) => s.name === 'polyp');
    sp.image_sets = ['endotect2020_polyp_endoscopy'];
    const r = ManifestSchema.safeParse(m);
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message).join('; ')).toMatch(/specialist "polyp" has image_sets but does not answer for its structures altogether/);
  });
});
