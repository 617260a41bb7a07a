import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../atomic-write.js';
import { gridOf, gridProblem, type PixelHead } from './pixel-head.js';

/**
 * An adapter: one structure taught to a model from a few labelled images, as one JSON file
 * (`<id>.json`, about 60 KB) that can be copied to another server's adapters folder as it is.
 * The head's weights are little-endian float32, base64, with their sha256.
 */
export const ADAPTER_FORMAT = 'promptseg-adapter';
export const ADAPTER_FORMAT_VERSION = 1;

export const AdapterFileSchema = z.object({
  format: z.literal(ADAPTER_FORMAT),
  format_version: z.literal(ADAPTER_FORMAT_VERSION),
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,80}$/),
  slug: z.string().regex(/^[a-z0-9_]{1,64}$/),
  name: z.string().min(1).max(100),
  synonyms: z.array(z.string().min(1).max(100)).max(20),
  modality: z.string().nullable(),
  description: z.string(),
  base_model: z.object({ id: z.string(), model_files_sha256: z.string() }),
  made: z.object({
    k: z.number().int().positive(),
    seed: z.number().int(),
    support: z.array(z.string()),
    source: z.object({ dataset: z.string(), sha256: z.string() }),
    variants: z.number().int().nonnegative(),
    mirror: z.boolean(),
    steps: z.number().int().positive(),
    heads: z.number().int().positive(),
    seconds: z.number(),
    cells: z.object({ structure: z.number().int(), background: z.number().int() }),
    created_at: z.string(),
    promptseg_version: z.string(),
  }),
  calibration: z.object({
    fitted_on: z.enum(['validation', 'none']),
    temperature: z.number().positive(),
    bias: z.number(),
    mask_threshold: z.number().gt(0).lt(1),
    largest_component: z.boolean(),
    presence: z.object({ a: z.number(), b: z.number(), fitted: z.boolean() }),
  }),
  /** Pooled image embeddings of the support images (float32 base64, count x dims) and the distance past which an image is unlike them all. */
  familiarity: z.object({ count: z.number().int().nonnegative(), dims: z.number().int().positive(), embeddings: z.string(), threshold: z.number().positive().nullable() }),
  validation: z.object({ images: z.number().int(), dice_mean: z.number(), dice_ci95: z.tuple([z.number(), z.number()]) }).nullable(),
  /** The heads whose mean logit is the adapter's (pixel-head.ts). */
  heads: z
    .array(
      z.object({
        inputs: z.array(z.object({ name: z.string(), channels: z.number().int().positive(), height: z.number().int().positive(), width: z.number().int().positive() })),
        hidden: z.number().int().positive(),
        weights: z.string(),
        weights_sha256: z.string(),
      }),
    )
    .min(1),
});
export type AdapterFile = z.infer<typeof AdapterFileSchema>;

/** float32 arrays of one length as little-endian base64. */
export function encodeFloats(rows: Float32Array[]): string {
  const buf = Buffer.alloc(rows.reduce((n, r) => n + r.length, 0) * 4);
  let o = 0;
  for (const r of rows) for (const v of r) o = buf.writeFloatLE(v, o);
  return buf.toString('base64');
}

/** encodeFloats back to `count` rows of `dims`. */
export function decodeFloats(b64: string, count: number, dims: number): Float32Array[] {
  const buf = Buffer.from(b64, 'base64');
  if (buf.length !== count * dims * 4) throw new Error(`its embeddings hold ${buf.length / 4} values, not ${count} x ${dims}`);
  return Array.from({ length: count }, (_, i) => Float32Array.from({ length: dims }, (_, j) => buf.readFloatLE((i * dims + j) * 4)));
}

/** The head's arrays in file order: mean, std, w1, b1, w2, b2. */
export function encodeHead(head: PixelHead): { weights: string; weights_sha256: string } {
  const parts = [head.mean, head.std, head.w1, head.b1, head.w2, Float32Array.of(head.b2)];
  const n = parts.reduce((s, p) => s + p.length, 0);
  const buf = Buffer.alloc(n * 4);
  let o = 0;
  for (const p of parts) for (const v of p) o = buf.writeFloatLE(v, o);
  return { weights: buf.toString('base64'), weights_sha256: createHash('sha256').update(buf).digest('hex') };
}

/** One head back from its file record; throws with what is wrong (checked sizes and hash). */
export function decodeHead(f: AdapterFile['heads'][number]): PixelHead {
  const buf = Buffer.from(f.weights, 'base64');
  if (createHash('sha256').update(buf).digest('hex') !== f.weights_sha256) throw new Error('its weights do not match their sha256 (the file is damaged)');
  const problem = gridProblem(f.inputs);
  if (problem) throw new Error(problem);
  const D = f.inputs.reduce((s, m) => s + m.channels, 0), H = f.hidden;
  const sizes = [D, D, D * H, H, H, 1];
  const total = sizes.reduce((s, v) => s + v, 0);
  if (buf.length !== total * 4) throw new Error(`its weights hold ${buf.length / 4} values, the head needs ${total}`);
  const all = new Float32Array(total);
  for (let i = 0; i < total; i++) all[i] = buf.readFloatLE(i * 4);
  let o = 0;
  const take = (n: number) => all.slice(o, (o += n));
  const [mean, std, w1, b1, w2, b2] = sizes.map(take);
  return { inputs: f.inputs, hidden: H, mean, std, w1, b1, w2, b2: b2[0] };
}

/** Every head of an adapter file back (decodeHead), on one grid. */
export function decodeHeads(heads: AdapterFile['heads']): PixelHead[] {
  const out = heads.map(decodeHead);
  if (out.some((h) => gridOf(h.inputs) !== gridOf(out[0].inputs))) throw new Error('its heads are fitted on different grids');
  return out;
}

/**
 * Writes the adapter as `<dir>/<id>.json` all at once: a hidden temporary file, flushed to disk,
 * then renamed over the name. A process killed half-way leaves only the hidden file, which is
 * never read as an adapter.
 */
export function writeAdapterFile(dir: string, f: AdapterFile): string {
  const file = path.join(dir, `${f.id}.json`);
  writeFileAtomic(file, JSON.stringify(f, null, 1));
  return file;
}
