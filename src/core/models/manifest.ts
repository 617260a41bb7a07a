import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const FileEntrySchema = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().nonnegative() });

export const InputSpecSchema = z.object({
  size: z.number().int().positive(),
  channels: z.literal('RGB'),
  mean: z.number(),
  std: z.number(),
  letterbox: z.string(),
  mask_stride: z.number().int().positive(),
  tile: z.object({ size: z.number().int(), stride: z.number().int(), native_max_side: z.number().int() }),
});

export const ModelEntrySchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
  title: z.string(),
  runner: z.enum(['promptseg-onnx']),
  description: z.string(),
  dir: z.string(),
  files: z.record(z.string(), FileEntrySchema),
  input: InputSpecSchema,
  vocabulary_version: z.string(),
  license: z.object({ code: z.string(), weights: z.string(), training_data: z.string() }),
  card: z.string(),
  /** Where `promptseg models pull` fetches the files (a Hugging Face-style hub repository). */
  hub: z.object({ repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/), revision: z.string().default('main') }).optional(),
  /** File in the model folder written by `promptseg calibrate` (fitted on the val split). */
  calibration: z.string().optional(),
  training: z.record(z.string(), z.unknown()).optional(),
});
export type ModelEntry = z.infer<typeof ModelEntrySchema>;

export const ManifestSchema = z.object({
  default: z.string(),
  models: z.array(ModelEntrySchema),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** Reads and validates models/manifest.json; a malformed manifest is a start-up error. */
export function loadManifest(modelsDir: string): Manifest {
  const file = path.join(modelsDir, 'manifest.json');
  const parsed = ManifestSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    throw new Error(`invalid model manifest ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
