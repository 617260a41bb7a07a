import { redrawingSpecialist, type ManifestSpecialist } from '../../models/manifest.js';
import type { GridSource } from '../../image/raster.js';
import { deferredGrid } from '../../image/grid-sampler.js';
import { checkpoint } from '../cancel.js';
import { decodeViews } from '../model-views.js';
import { EXTRA_PASS_MIN_PRESENCE, servedPresence, type Drawn, type Pass, type PassState, type PromptPlan } from './pass.js';

/**
 * The model's redrawing specialist for the prompt's structure, when the request and calibration
 * choose it and the first look does not call the structure clearly absent (one that answers for its
 * structures altogether drew the first look already; a redrawing one may refine what such a network
 * drew). Where several may redraw the structure, the request's or else the calibration's choice
 * among them, else the first.
 */
function chosen(s: PassState, p: PromptPlan): string | undefined {
  const st = p.structure, want = s.req.specialist;
  const sp = redrawingSpecialist(s.run.entry, st?.slug, st && (s.req.specialistNames?.[st.slug] ?? s.cal?.specialist_names?.[st.slug]));
  if (!st || !sp || want === false || !servesImage(sp, p) || servedPresence(s, p) < EXTRA_PASS_MIN_PRESENCE) return undefined;
  if (want === true) return sp.name;
  if (Array.isArray(want)) return want.includes(st.slug) ? sp.name : undefined;
  return s.cal?.specialists?.includes(st.slug) ? sp.name : undefined;
}

/**
 * Whether a specialist redraws this prompt's structure on this image. A task-specific network has
 * seen one dataset's images: for a structure two networks answer for on different kinds of image
 * (`bySet`: the lungs on clean and on COVID-19 radiographs), it redraws only where the image was
 * routed to the network that answers on its training set's images. Every other specialist, and a
 * task net for a structure one network answers everywhere, redraws wherever it is chosen.
 */
function servesImage(sp: ManifestSpecialist, p: PromptPlan): boolean {
  if (!sp.task_net || !p.bySet) return true;
  const trainedOn = sp.training?.dataset;
  return typeof trainedOn === 'string' && p.bySet.has(trainedOn) && p.bySet.get(trainedOn) === (p.answeredBy ?? '');
}

/** The prompt's specialist when it is a task-specific network (it redraws from the whole image only: no closer look or image copies through it). */
export function taskNetSpecialist(s: PassState, p: PromptPlan) {
  const sp = p.specialist ? s.run.entry.specialists?.find((x) => x.name === p.specialist) : undefined;
  return sp?.task_net ? sp : undefined;
}

/** A task-specific specialist's logits on the request's image, kept in the feature cache with the image encoders' features (a further prompt on the image reuses them). */
async function taskNetSources(s: PassState, name: string): Promise<GridSource[]> {
  const key = `${s.run.entry.id}:task-net:${name}:${s.imageSha256}`;
  const cached = s.run.ctx.featureCache.get(key);
  s.run.hit(!!cached);
  if (cached) return cached.tensors as GridSource[];
  await checkpoint();
  const t = performance.now();
  const sources = await s.run.model.taskNetLogits!(name, s.image);
  s.run.timings.decode_mask += performance.now() - t;
  s.run.ctx.featureCache.set(key, { bytes: sources.reduce((a, g) => a + g.grid.data.byteLength, 0), pooled: new Float32Array(0), tensors: sources });
  return sources;
}

/**
 * Specialists redraw the masks of their structures (an image encoder and mask decoder fine-tuned
 * on them, or a task-specific network trained on their dataset alone); the first look's presence,
 * quality and similarity stand (a specialist has seen only its own structures' images, so it is
 * not asked whether they are there).
 */
export const specialistPass: Pass = {
  name: 'specialist',
  serves: (s) => s.prompts.filter((p) => chosen(s, p)).map((p) => p.index),
  async run(s, idx) {
    for (const i of idx) s.prompts[i].specialist = chosen(s, s.prompts[i]);
    const drawn: Drawn[] = [];
    for (const name of new Set(idx.map((i) => s.prompts[i].specialist!))) {
      const group = idx.filter((i) => s.prompts[i].specialist === name);
      const net = taskNetSpecialist(s, s.prompts[group[0]]);
      if (net) {
        const sources = await taskNetSources(s, name);
        for (const i of group) {
          const src = sources[net.structures.indexOf(s.prompts[i].structure!.slug)];
          drawn.push({ prompt: i, how: 'replace', look: { ...s.prompts[i].members[0], logits: deferredGrid(src, s.image.width, s.image.height) } });
        }
        continue;
      }
      const out = await decodeViews(s.run, s.image, s.imageSha256, group.map((i) => ({ structure: s.prompts[i].structure, mode: s.prompts[i].mode, embed: s.prompts[i].embeds[0] })), { specialist: name });
      group.forEach((i, k) => drawn.push({ prompt: i, how: 'replace', look: out.looks[k] }));
    }
    return drawn;
  },
};
