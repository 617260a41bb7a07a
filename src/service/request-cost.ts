import { fail } from '../core/errors.js';

/** What a segment request asks for, as far as its cost goes. */
export interface CostShape {
  width: number;
  height: number;
  prompts: number;
  tta: number;
  ttaImage: number | 'auto';
  zoom: 'auto' | 'on' | 'off';
  specialist: 'auto' | 'on' | 'off';
}

/**
 * A request's cost in megapixel-passes: full-resolution work (post-processing, tiles, masks) grows
 * with the pixels, and every prompt pays each pass asked for: 1 + paraphrases, 1 + image
 * transforms, twice with a second look or a specialist redraw. Small images count as a quarter
 * megapixel (the model's own input); `auto` choices count as one pass (they add passes only for the
 * few structures whose calibration chose them, and only where the first look finds the structure).
 */
export function requestCost(r: CostShape): { cost: number; parts: string[] } {
  const mp = Math.max(0.25, (r.width * r.height) / 1e6);
  const factors: [string, number][] = [
    [`${r.width}x${r.height} = ${mp.toFixed(2)} MP`, mp],
    [`${r.prompts} prompt(s)`, r.prompts],
    [`tta ${r.tta} (x${1 + r.tta})`, 1 + r.tta],
    [`tta_image ${r.ttaImage} (x${r.ttaImage === 'auto' ? 1 : 1 + r.ttaImage})`, r.ttaImage === 'auto' ? 1 : 1 + r.ttaImage],
    [`zoom ${r.zoom} (x${r.zoom === 'on' ? 2 : 1})`, r.zoom === 'on' ? 2 : 1],
    [`specialist ${r.specialist} (x${r.specialist === 'on' ? 2 : 1})`, r.specialist === 'on' ? 2 : 1],
  ];
  return { cost: factors.reduce((c, [, f]) => c * f, 1), parts: factors.filter(([, f], i) => i < 2 || f > 1).map(([s]) => s) };
}

/** Refuses, before any model work, a request whose cost is over the budget; the message names what to reduce. */
export function checkCost(r: CostShape, budget: number): void {
  const { cost, parts } = requestCost(r);
  if (cost <= budget) return;
  fail(
    'invalid_argument',
    `this request would cost about ${Math.round(cost)} megapixel-passes (${parts.join(' x ')}), over this server's budget of ${budget} (PROMPTSEG_MAX_COST): send fewer prompts, lower tta or tta_image, turn zoom or specialist to auto, or send a smaller image`,
    'prompts',
  );
}
