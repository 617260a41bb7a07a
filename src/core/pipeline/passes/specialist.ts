import { redrawingSpecialist } from '../../models/manifest.js';
import { sigmoid } from '../../trust/scores.js';
import { decodeViews } from '../model-views.js';
import { EXTRA_PASS_MIN_PRESENCE, type Drawn, type Pass, type PassState, type PromptPlan } from './pass.js';

/** The model's redrawing specialist for the prompt's structure, when the request and calibration choose it and the first look does not call the structure clearly absent (one that answers for its structures altogether drew the first look already; a redrawing one may refine what such a network drew). */
function chosen(s: PassState, p: PromptPlan): string | undefined {
  const st = p.structure, want = s.req.specialist;
  const sp = redrawingSpecialist(s.run.entry, st?.slug);
  if (!st || !sp || want === false || sigmoid(p.members[0].presence) < EXTRA_PASS_MIN_PRESENCE) return undefined;
  if (want === true) return sp.name;
  if (Array.isArray(want)) return want.includes(st.slug) ? sp.name : undefined;
  return s.cal?.specialists?.includes(st.slug) ? sp.name : undefined;
}

/**
 * Specialists redraw the masks of their structures (an image encoder and mask decoder fine-tuned
 * on them); the first look's presence, quality and similarity stand (a specialist has seen only
 * its own structures' images, so it is not asked whether they are there).
 */
export const specialistPass: Pass = {
  name: 'specialist',
  serves: (s) => s.prompts.filter((p) => chosen(s, p)).map((p) => p.index),
  async run(s, idx) {
    for (const i of idx) s.prompts[i].specialist = chosen(s, s.prompts[i]);
    const drawn: Drawn[] = [];
    for (const name of new Set(idx.map((i) => s.prompts[i].specialist!))) {
      const group = idx.filter((i) => s.prompts[i].specialist === name);
      const out = await decodeViews(s.run, s.image, s.imageSha256, group.map((i) => ({ structure: s.prompts[i].structure, mode: s.prompts[i].mode, embed: s.prompts[i].embeds[0] })), { specialist: name });
      group.forEach((i, k) => drawn.push({ prompt: i, how: 'replace', look: out.looks[k] }));
    }
    return drawn;
  },
};
