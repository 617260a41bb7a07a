import { decodeViews } from '../model-views.js';
import type { Drawn, Pass } from './pass.js';

/**
 * The first look: every prompt and every paraphrase on the image as the model sees it (whole,
 * tiled, through its CT window), in one batch per view; also the whole image's pooled embedding.
 */
export const firstLook: Pass = {
  name: 'first_look',
  serves: (s) => s.prompts.map((p) => p.index),
  runsWithoutPrompts: true,
  async run(s, idx) {
    // the batch: every prompt's own text, then each prompt's paraphrases
    const order = [...idx.map((i) => ({ prompt: i, k: 0 })), ...idx.flatMap((i) => s.prompts[i].paraphrases.map((_, j) => ({ prompt: i, k: j + 1 })))];
    const views = order.map(({ prompt, k }) => ({ structure: s.prompts[prompt].structure, mode: s.prompts[prompt].mode, embed: s.prompts[prompt].embeds[k] }));
    const out = await decodeViews(s.run, s.image, s.imageSha256, views, { embedding: true });
    s.embedding = out.embedding;
    return order.map(({ prompt }, j): Drawn => ({ prompt, how: 'join', look: out.looks[j] }));
  },
};
