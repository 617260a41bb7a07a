import { networkForImage } from '../image-routing.js';
import { decodeViews } from '../model-views.js';
import type { Drawn, Pass, PassState } from './pass.js';

/**
 * The first look: every prompt and every paraphrase on the image as the model sees it (whole,
 * tiled, through its CT window), in one batch per view; also the whole image's pooled embedding
 * (always the model's own encoder's). A prompt whose structure a specialist answers for altogether
 * (the plan set its `answeredBy`) is asked of that specialist, in a batch of its own; so is one that
 * two networks answer for on different kinds of image, when the pooled embedding lies nearest a
 * training set of that specialist's (its look from the model's own batch is then replaced).
 */
export const firstLook: Pass = {
  name: 'first_look',
  serves: (s) => s.prompts.map((p) => p.index),
  runsWithoutPrompts: true,
  async run(s, idx) {
    // the batch: every prompt's own text, then each prompt's paraphrases
    const order = [...idx.map((i) => ({ prompt: i, k: 0 })), ...idx.flatMap((i) => s.prompts[i].paraphrases.map((_, j) => ({ prompt: i, k: j + 1 })))];
    const looks: Drawn[] = new Array(order.length);
    const ask = async (name: string | undefined) => {
      const group = order.flatMap((o, j) => (s.prompts[o.prompt].answeredBy === name ? [j] : []));
      const views = group.map((j) => ({ structure: s.prompts[order[j].prompt].structure, mode: s.prompts[order[j].prompt].mode, embed: s.prompts[order[j].prompt].embeds[order[j].k] }));
      const out = await decodeViews(s.run, s.image, s.imageSha256, views, name ? { specialist: name } : { embedding: true });
      if (!name) s.embedding = out.embedding;
      group.forEach((j, n) => (looks[j] = { prompt: order[j].prompt, how: 'join', look: out.looks[n] }));
    };
    // the model's own batch first (it also gives the pooled embedding, with or without prompts), then
    // each specialist's, with the prompts the image's nearest training set gives one
    await ask(undefined);
    routeByImage(s, idx);
    for (const name of new Set(order.flatMap(({ prompt }) => s.prompts[prompt].answeredBy ?? []))) await ask(name);
    return looks;
  },
};

/**
 * Gives the prompts whose structure two networks answer for (`bySet`) the network of the training
 * set the image lies nearest; their looks from the model's own batch are then drawn again by it.
 */
function routeByImage(s: PassState, idx: number[]): void {
  const stats = s.nearestSetStats, embedding = s.embedding;
  if (!stats || !embedding?.length) return;
  for (const i of idx) {
    const p = s.prompts[i];
    const net = p.bySet && !p.answeredBy ? networkForImage(p.bySet, embedding, stats) : '';
    if (net) p.answeredBy = p.specialist = net;
  }
}
