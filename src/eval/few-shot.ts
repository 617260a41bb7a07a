import { adaptHead, adapterLogits, adapterMask } from '../core/adapters/adapt.js';
import type { LabelledImage } from '../core/adapters/support.js';
import type { SegmentationModel } from '../core/models/model.js';
import { letterbox } from '../core/image/resize.js';
import { readLabelledCase, type LabelledFolder } from '../service/labelled-folder.js';
import { bootstrapCi, dice, mean } from './metrics.js';

/** One adaptation of the few-shot protocol and its test figures. */
export interface FewShotRun {
  k: number | 'all';
  draw: number;
  support: string[];
  seconds: number;
  validation_dice: number | null;
  test_dice: number[];
  test_dice_mean: number;
}

/** Reads every case of the splits once (adaptation and testing reuse them). */
export async function readSplits(folder: LabelledFolder, names: string[], maxPixels: number): Promise<Map<string, LabelledImage>> {
  const out = new Map<string, LabelledImage>();
  for (const s of names) for (const c of folder.splits[s] ?? []) if (!out.has(c)) out.set(c, await readLabelledCase(folder, c, maxPixels));
  return out;
}

/** Test Dice of an adapted head on labelled images (present cases only: the protocol's figure). */
export async function testDice(model: SegmentationModel, outcome: Awaited<ReturnType<typeof adaptHead>>, test: LabelledImage[]): Promise<number[]> {
  const out: number[] = [];
  for (const t of test) {
    if (!t.mask.some((v) => v)) continue;
    const f = await model.encodeImage(letterbox(t.image, model.entry.input.size).pixels);
    const logits = await adapterLogits(model, outcome.heads, model.featureMaps!(f), t.image.width, t.image.height);
    out.push(dice(adapterMask(logits, outcome.calibration), t.mask));
  }
  return out;
}

/** Mean and 95% bootstrap interval over every test case of every draw at one k. */
export function summariseK(runs: FewShotRun[]): { k: number | 'all'; draws: number; dice: number; ci: [number, number]; draw_means: number[] } {
  const all = runs.flatMap((r) => r.test_dice);
  return { k: runs[0].k, draws: runs.length, dice: mean(all), ci: bootstrapCi(all), draw_means: runs.map((r) => r.test_dice_mean) };
}
