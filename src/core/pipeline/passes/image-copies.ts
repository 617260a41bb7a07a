import type { Structure } from '../../vocabulary.js';
import { checkpoint } from '../cancel.js';
import { IMAGE_TRANSFORMS, ORIENTATION_FREE_MODALITIES, THORAX_REGIONS, type ImageTransform } from '../image-tta.js';
import { decodeViews, runWhole, zoomKey, type Look } from '../model-views.js';
import { pasteSquare } from '../zoom.js';
import { EXTRA_PASS_MIN_PRESENCE, servedPresence, type Drawn, type Pass, type PassState, type PromptPlan } from './pass.js';
import { taskNetSpecialist } from './specialist.js';

/** How many transformed copies the prompt gets (none for a mask a task-specific network redrew): a number given for every prompt as given; counts from a table (the calibration's under 'auto', or the request's by slug) only where the first look does not call the structure clearly absent. */
function count(s: PassState, p: PromptPlan): number {
  const want = s.req.ttaImage ?? 'auto';
  if (taskNetSpecialist(s, p)) return 0; // a task-specific network's mask is its own: no copies through it
  if (typeof want === 'number') return want;
  if (servedPresence(s, p) < EXTRA_PASS_MIN_PRESENCE) return 0;
  const table = want === 'auto' ? s.cal?.tta_image : want;
  const slug = p.structure?.slug;
  return (slug && table?.[slug]) || 0;
}

const flipSafe = (st: Structure | undefined) => !!st && !st.laterality && !THORAX_REGIONS.has(st.region);
const orientationFree = (st: Structure | undefined) => !!st && ORIENTATION_FREE_MODALITIES.has(st.modality);
const suits = (tf: ImageTransform, st: Structure | undefined) => (!tf.flips || flipSafe(st)) && (!tf.orientationFreeOnly || orientationFree(st));

/** Per prompt: the first transforms that suit it (no mirroring of lateral or thoracic structures), as many as its count. */
const allowed = (s: PassState, p: PromptPlan) => IMAGE_TRANSFORMS.filter((tf) => suits(tf, p.structure)).slice(0, count(s, p));

/**
 * Image-side test-time augmentation: each transform is a new image-encoder pass whose logits are
 * mapped back to the original pixels and join the prompt's members. Whole-image prompts see the
 * transformed image; prompts that took the second look see their transformed crop (averaging a
 * closer look with distant ones would undo it), pasted over the first look as the zoom itself is,
 * with the first look's presence, quality and similarity; a prompt a specialist redrew has its
 * copies drawn by the specialist too, with the first look's scores.
 */
export const imageCopies: Pass = {
  name: 'image_copies',
  serves: (s) => s.prompts.filter((p) => allowed(s, p).length > 0).map((p) => p.index),
  async run(s, idx) {
    const per = new Map(idx.map((i) => [i, allowed(s, s.prompts[i])]));
    const transforms = IMAGE_TRANSFORMS.filter((tf) => [...per.values()].some((a) => a.includes(tf)));
    s.imageTransforms = transforms.map((tf) => tf.name);
    const drawn: Drawn[] = [];
    for (const tf of transforms) {
      const mine = idx.filter((i) => per.get(i)!.includes(tf));
      const whole = mine.filter((i) => !s.prompts[i].closer);
      const copy = whole.length ? tf.apply(s.image) : undefined;
      const bySpecialist = new Map<string | undefined, Map<number, Look>>();
      for (const name of new Set(whole.map((i) => s.prompts[i].specialist))) {
        const group = whole.filter((i) => s.prompts[i].specialist === name);
        const out = await decodeViews(s.run, copy!, `${s.imageSha256}:tta:${tf.name}`, group.map((i) => ({ structure: s.prompts[i].structure, mode: s.prompts[i].mode, embed: s.prompts[i].embeds[0] })), { specialist: name });
        bySpecialist.set(name, new Map(group.map((i, k) => [i, out.looks[k]])));
      }
      for (const i of mine) {
        await checkpoint();
        const p = s.prompts[i], first = p.members[0];
        const z = p.closer;
        if (z) {
          const c = await runWhole(s.run, tf.apply(z.crop), `${zoomKey(s.imageSha256, z.sq)}:tta:${tf.name}`, [p.embeds[0]], p.specialist);
          drawn.push({ prompt: i, how: 'join', look: { ...first, logits: pasteSquare(z.first, tf.invert(c.looks[0].logits), z.sq) } });
        } else {
          const look = bySpecialist.get(p.specialist)!.get(i)!;
          drawn.push({ prompt: i, how: 'join', look: p.specialist ? { ...first, logits: tf.invert(look.logits) } : { ...look, logits: tf.invert(look.logits) } });
        }
      }
    }
    return drawn;
  },
};
