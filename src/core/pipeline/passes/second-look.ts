import { sigmoid } from '../../trust/scores.js';
import { boxOf } from '../mask-box.js';
import { runWhole, windowFor, zoomKey } from '../model-views.js';
import { cropSquare, pasteSquare, zoomSquare } from '../zoom.js';
import type { Drawn, Pass, PassState, PromptPlan } from './pass.js';
import { taskNetSpecialist } from './specialist.js';

function wanted(s: PassState, p: PromptPlan): boolean {
  const st = p.structure, zoom = s.req.zoom;
  if (!st || p.mode !== 'whole' || zoom === false || windowFor(s.run.ctx, s.image, st) || taskNetSpecialist(s, p)) return false;
  if (Array.isArray(zoom)) return zoom.includes(st.slug);
  return zoom === true || (s.cal?.zoom ?? []).includes(st.slug);
}

/**
 * The second look: prompts of whole-image structures whose first mask is small are run again on a
 * crop around it (the model was trained on such crops), and the crop's logits replace the first
 * look's inside the crop. Only where the first look finds the structure (presence >= 0.5), and not
 * for a mask a task-specific network redrew.
 */
export const secondLook: Pass = {
  name: 'second_look',
  serves: (s) => s.prompts.filter((p) => wanted(s, p) && sigmoid(p.members[0].presence) >= 0.5).map((p) => p.index),
  async run(s, idx) {
    const drawn: Drawn[] = [];
    for (const i of idx) {
      const p = s.prompts[i], first = p.members[0].logits;
      const box = boxOf(first, 0, s.image.width, s.image.height, 0);
      const sq = box && zoomSquare(box, s.image.width, s.image.height, s.run.entry.input.size);
      if (!sq) continue;
      const crop = cropSquare(s.image, sq);
      const out = await runWhole(s.run, crop, zoomKey(s.imageSha256, sq), [p.embeds[0]], p.specialist);
      p.closer = { sq, crop, first };
      drawn.push({ prompt: i, how: 'replace', look: { ...out.looks[0], logits: pasteSquare(first, out.looks[0].logits, sq) } });
    }
    return drawn;
  },
};
