import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/** sha256 and size of a file; hub bundles may leave them out, and the pull then checks the hub's own LFS sha256. */
export const FileEntrySchema = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(), bytes: z.number().int().nonnegative().optional() });

/** Which code runs a model; text runners segment from prompts, region runners from boxes and points. */
export const RUNNERS = {
  'promptseg-onnx': 'text',
  'clipseg-transformers': 'text',
  'biomedclip-onnx': 'text',
  'sam-transformers': 'region',
} as const;
export type RunnerName = keyof typeof RUNNERS;

export const InputSpecSchema = z.object({
  size: z.number().int().positive(),
  channels: z.literal('RGB'),
  /** The built-in model's normalisation ((v/255 - mean) / std); transformers.js bundles normalise by their preprocessor_config.json. */
  mean: z.number().optional(),
  std: z.number().optional(),
  letterbox: z.string(),
  mask_stride: z.number().int().positive(),
  tile: z.object({
    size: z.number().int(),
    stride: z.number().int(),
    native_max_side: z.number().int(),
    /** Thin structures: the native-scale image is enlarged this many times before tiling (1 = not). */
    upscale: z.number().positive().max(4).optional(),
  }),
});

/**
 * How a task-specific network sees an image (core/models/task-net.ts): letterboxed whole to
 * `input_size`, or in native-scale tiles of that size (the longer side brought to at most
 * `tile.native_max_side` first), logits averaged where tiles overlap.
 */
export const TaskNetInputSchema = z.object({
  input_size: z.number().int().positive(),
  tiled: z.boolean(),
  tile: z.object({ size: z.number().int().positive(), stride: z.number().int().positive(), native_max_side: z.number().int().positive() }).optional(),
});

export const ModelEntrySchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
  title: z.string(),
  runner: z.enum(Object.keys(RUNNERS) as [RunnerName, ...RunnerName[]]),
  /** transformers.js bundles: which ONNX weights to load (fp32 = onnx/*.onnx, q8 = onnx/*_quantized.onnx). */
  dtype: z.enum(['fp32', 'q8']).optional(),
  /** A region model (SAM family) that refines this text model's masks by default (the MedCLIP-SAM pattern). */
  refine_with: z.string().optional(),
  /** Whether the weights were run here (false: only the tiny test bundle with the same layout was). */
  verified_with_real_weights: z.boolean().optional(),
  description: z.string(),
  dir: z.string(),
  files: z.record(z.string(), FileEntrySchema),
  input: InputSpecSchema,
  vocabulary_version: z.string(),
  license: z.object({ code: z.string(), weights: z.string(), training_data: z.string() }),
  card: z.string(),
  /** Where `promptseg models pull` fetches the files (a Hugging Face-style hub repository). */
  hub: z.object({ repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/), revision: z.string().default('main') }).optional(),
  /** Bundles made locally by a conversion script rather than pulled (BiomedCLIP has no official ONNX export). */
  convert: z.object({ command: z.string() }).optional(),
  /** File in the model folder written by `promptseg calibrate` (fitted on the val split). */
  calibration: z.string().optional(),
  training: z.record(z.string(), z.unknown()).optional(),
  /**
   * Specialists (promptseg-onnx): an image encoder and mask decoder fine-tuned from the model's own
   * on the training cases of a few structures, sharing its text encoder. The pipeline redraws those
   * structures' masks with them where the calibration found that raises val Dice; presence stays the
   * generalist's. A specialist with `own_presence` answers for its structures altogether (presence,
   * quality, similarity and mask, in the first look): a network trained on more datasets than the
   * model's own, serving the structures the model's own decoder never learned. Its `image_sets` are
   * the training sets it answers for on their own images, including structures that other sets the
   * model's own network was trained on label too (lungs on COVID-19 radiographs and on clean ones):
   * for such a structure, the image's nearest of the sets that label it decides (image-routing.ts).
   * A specialist with `task_net` instead of an encoder and decoder is a task-specific network (one
   * dataset's structures, no text: core/models/task-net.ts) that redraws its structures' masks from
   * the whole image; `structures` are its output channels in order, and `training.dataset` the set
   * it was trained on (a structure two networks answer for is redrawn only on images routed to the
   * network that answers on that set's images: passes/specialist.ts).
   */
  specialists: z
    .array(
      z.object({
        name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/),
        structures: z.array(z.string()).min(1),
        image_encoder: z.string().optional(),
        mask_decoder: z.string().optional(),
        task_net: TaskNetInputSchema.extend({ file: z.string() }).optional(),
        own_presence: z.boolean().optional(),
        image_sets: z.array(z.string()).optional(),
        training: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .optional(),
});
export type ModelEntry = z.infer<typeof ModelEntrySchema>;
/** One of a model's specialists, as its manifest entry declares it. */
export type ManifestSpecialist = NonNullable<ModelEntry['specialists']>[number];
export const modelKind = (e: ModelEntry): 'text' | 'region' => RUNNERS[e.runner];
/** The specialists that answer for their structures altogether (`own_presence`): networks beside the model's own. */
export const answeringNetworks = (e: ModelEntry) => (e.specialists ?? []).filter((sp) => sp.own_presence);
/** The specialists that redraw their structures' masks after the first look (without `own_presence`). */
export const redrawingSpecialists = (e: ModelEntry) => (e.specialists ?? []).filter((sp) => !sp.own_presence);
/** Every specialist that may redraw a structure's mask after the first look, in manifest order (the calibration chooses among several on val). */
export const redrawingCandidates = (e: ModelEntry, slug: string | undefined) => (slug ? redrawingSpecialists(e).filter((sp) => sp.structures.includes(slug)) : []);
/**
 * The specialist that redraws a structure's mask after the first look, if the model has one for it:
 * the one named (a calibration's choice among several), else the first in manifest order.
 */
export const redrawingSpecialist = (e: ModelEntry, slug: string | undefined, name?: string) => {
  const candidates = redrawingCandidates(e, slug);
  return candidates.find((sp) => sp.name === name) ?? candidates[0];
};
/** The specialist that answers for a structure altogether (`own_presence`) on every image, if the model has one for it. */
export const answeringSpecialist = (e: ModelEntry, slug: string | undefined) => (slug ? answeringNetworks(e).find((sp) => sp.structures.includes(slug)) : undefined);

export const ManifestSchema = z
  .object({
    /** The default text model (required in the main manifest; extra manifests may leave it out). */
    default: z.string().optional(),
    models: z.array(ModelEntrySchema),
  })
  .superRefine((m, ctx) => {
    const ids = new Set(m.models.map((e) => e.id));
    if (m.default !== undefined && !ids.has(m.default)) ctx.addIssue({ code: 'custom', path: ['default'], message: `default model "${m.default}" is not in models` });
    m.models.forEach((e, i) => {
      if (!e.hub && !e.convert && Object.values(e.files).some((f) => !f.sha256)) ctx.addIssue({ code: 'custom', path: ['models', i, 'files'], message: 'files of a bundle that is neither pulled nor converted need sha256' });
      (e.specialists ?? []).forEach((sp, k) => {
        const graphs = sp.task_net ? [sp.task_net.file] : [sp.image_encoder, sp.mask_decoder];
        if (sp.task_net ? sp.image_encoder || sp.mask_decoder || sp.own_presence : !sp.image_encoder || !sp.mask_decoder) {
          ctx.addIssue({ code: 'custom', path: ['models', i, 'specialists', k], message: `specialist "${sp.name}" needs either an image_encoder and a mask_decoder, or a task_net (which redraws masks only: no own_presence)` });
        }
        for (const f of graphs) {
          if (f !== undefined && !(f in e.files)) ctx.addIssue({ code: 'custom', path: ['models', i, 'specialists', k], message: `specialist "${sp.name}" names ${f}, which is not among the model's files` });
        }
        if (sp.image_sets?.length && !sp.own_presence) ctx.addIssue({ code: 'custom', path: ['models', i, 'specialists', k, 'image_sets'], message: `specialist "${sp.name}" has image_sets but does not answer for its structures altogether (own_presence)` });
      });
    });
  });
export type Manifest = Omit<z.infer<typeof ManifestSchema>, 'default'> & { default: string };

/** Reads and validates models/manifest.json; a malformed manifest is a start-up error. */
export function loadManifest(modelsDir: string, name = 'manifest.json'): z.infer<typeof ManifestSchema> {
  const file = path.join(modelsDir, name);
  const parsed = ManifestSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    throw new Error(`invalid model manifest ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
