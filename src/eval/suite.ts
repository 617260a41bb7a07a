import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { IMAGE_TRANSFORMS } from '../core/pipeline/image-tta.js';

export const SuiteSchema = z.object({
  name: z.string().min(1),
  description: z.string().default(''),
  data_root: z.string().describe('Folder in the medseg2d layout; relative paths are resolved from the suite file.'),
  datasets: z.union([z.literal('all'), z.array(z.string()).min(1)]).default('all'),
  split: z.enum(['train', 'val', 'test']).default('test'),
  models: z.array(z.string()).min(1).max(4).default(['promptseg-builtin']),
  prompt_sets: z.array(z.enum(['canonical', 'eval_only'])).min(1).default(['canonical', 'eval_only']),
  negatives: z.object({ absent_per_case: z.number().int().min(0).max(8).default(2), nonsense_per_case: z.number().int().min(0).max(4).default(1) }).default({ absent_per_case: 2, nonsense_per_case: 1 }),
  limit_per_dataset: z.number().int().positive().nullable().default(null),
  threshold: z.number().gt(0).lt(1).optional().describe('One mask threshold for every structure; left out, each structure gets what the segment operation serves by default (its threshold fitted on val where the calibration has one, else 0.5).'),
  tta: z.number().int().min(0).max(8).default(0).describe('Text-side test-time augmentation (paraphrases per prompt), as the segment operation takes it.'),
  tta_image: z.union([z.literal('auto'), z.number().int().min(0).max(IMAGE_TRANSFORMS.length)]).default('auto').describe("Image-side test-time augmentation (transformed copies), as the segment operation takes it; auto: what the operation serves by default (the calibration's per-structure counts)."),
  nsd_tolerance_px: z.number().nonnegative().default(2),
  nsd_tolerance_mm: z.number().nonnegative().default(2).describe('Used instead of the pixel tolerance when the image carries its spacing (DICOM, NIfTI).'),
  ood_probe_per_kind: z.number().int().min(0).max(50).default(8).describe('Non-medical images made by code per kind (noise, gradient, pattern, text, scene) run through each model to measure out-of-distribution flagging; 0 = off.'),
  failure_dice: z.number().min(0).max(1).default(0.7),
  dice_targets: z
    .record(z.string(), z.number().gt(0).lt(1))
    .superRefine((r, ctx) => {
      for (const k of Object.keys(r)) if (!/^[^/]+\/[^/]+$/.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: `"${k}" must be "<dataset>/<structure slug>"` });
    })
    .default({}).describe('Dice bar per "<dataset>/<structure slug>" (present cases, canonical prompts); the report marks each met or not met.'),
  calibration_pixels_per_case: z.number().int().min(0).default(2000),
  bootstrap: z.number().int().min(100).default(1000),
  seed: z.number().int().default(7),
});
export type Suite = z.infer<typeof SuiteSchema>;

export function loadSuite(file: string): { suite: Suite; dataRoot: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read suite ${file}: ${(e as Error).message}`);
  }
  const r = SuiteSchema.safeParse(raw);
  if (!r.success) throw new Error(`invalid suite ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { suite: r.data, dataRoot: path.resolve(path.dirname(file), r.data.data_root) };
}
