import { createHash } from 'node:crypto';
import { fail } from '../core/errors.js';
import { adaptHead, DEFAULT_VARIANTS, type AdaptProgress } from '../core/adapters/adapt.js';
import { ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, encodeFloats, encodeHead, type AdapterFile } from '../core/adapters/adapter-file.js';
import type { LoadedAdapter } from '../core/adapters/adapter-set.js';
import { DEFAULT_TRAIN } from '../core/adapters/pixel-head.js';
import type { LabelledImage } from '../core/adapters/support.js';
import { modelFilesFingerprint } from '../core/trust/calibration.js';
import { bootstrapCi, seededRandom } from '../core/stats.js';
import type { ServiceContext } from './context.js';
import { embedderFor } from '../core/pipeline/segment.js';
import { drawCases, openLabelledFolder, readLabelledCase, type LabelledFolder } from './labelled-folder.js';

/** Validation images read to calibrate an adapter, at most (spread over the split). */
const MAX_VALIDATION = 40;

export interface AdaptRequest {
  folder: string;
  structure: string;
  name?: string;
  synonyms?: string[];
  /** Support images drawn from train; all of them when unset. */
  shots?: number;
  seed?: number;
  model?: string;
}

/** The adapter's id: its structure and a short hash of what made it. */
function adapterId(slug: string, parts: unknown[]): string {
  return `${slug.replace(/_/g, '-')}-${createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 8)}`;
}

/** An adaptation whose request has been checked: what it reads and what it will be called. */
export interface PreparedAdaptation {
  req: AdaptRequest;
  modelId: string;
  folder: LabelledFolder;
  id: string;
  name: string;
  synonyms: string[];
  seed: number;
}

/**
 * Checks an adaptation request before any work: the folder's layout and splits, the structure's
 * masks folder, shots against the train images, and the names against the built-in structures
 * and the served adapters. Errors name what was wrong.
 */
export function prepareAdaptation(ctx: ServiceContext, req: AdaptRequest): PreparedAdaptation {
  const adapters = ctx.pipeline.adapters;
  if (!adapters) return fail('invalid_argument', 'this server has no adapters folder');
  const modelId = req.model ?? ctx.pipeline.registry.defaultId;
  const model = ctx.pipeline.registry.get(modelId);
  if (!model.featureMaps) fail('invalid_argument', `model ${modelId} cannot be adapted (its runner does not give image features); adapt ${ctx.pipeline.registry.defaultId}`, 'model');
  if (!/^[a-z0-9_]{1,64}$/.test(req.structure)) fail('invalid_argument', 'structure must be a slug: lower-case letters, digits and _ (the folder masks/<structure>/)', 'structure');
  const folder = openLabelledFolder(req.folder, req.structure);
  const name = (req.name ?? folder.structure.name).trim();
  const synonyms = [...new Set((req.synonyms ?? folder.structure.synonyms).map((s) => s.trim()).filter(Boolean))];
  const seed = req.seed ?? 1;
  const train = folder.splits.train;
  if (req.shots !== undefined && (!Number.isInteger(req.shots) || req.shots < 1)) fail('invalid_argument', 'shots must be a whole number of at least 1', 'shots');
  if (req.shots !== undefined && req.shots > train.length) fail('invalid_argument', `shots is ${req.shots}, but ${folder.hasSplits ? 'the train split' : 'the folder'} has ${train.length} image${train.length === 1 ? '' : 's'}`, 'shots');
  const id = adapterId(req.structure, [folder.sha256, modelId, req.shots ?? 'all', seed, name, synonyms]);
  adapters.checkNames({ id, name, slug: req.structure, synonyms });
  return { req, modelId, folder, id, name, synonyms, seed };
}

/**
 * Teaches the model a structure from a folder of labelled images (labelled-folder.ts): support
 * images from `train` (k of them, drawn by the seed), calibration on up to 40 `val` images, and
 * the adapter written to the adapters folder and served from then on.
 */
export async function adaptFromFolder(ctx: ServiceContext, p: PreparedAdaptation, progress?: AdaptProgress): Promise<LoadedAdapter> {
  const { req, modelId, folder, id, name, synonyms, seed } = p;
  const adapters = ctx.pipeline.adapters!;
  const model = ctx.pipeline.registry.get(modelId);
  const train = folder.splits.train;

  const maxPixels = ctx.config.PROMPTSEG_MAX_PIXELS;
  const ids = drawCases(train, req.shots, seededRandom(seed));
  const support: LabelledImage[] = [];
  for (const c of ids) support.push(await readLabelledCase(folder, c, maxPixels));
  if (!support.some((s) => s.mask.some((v) => v))) fail('bad_input', `every support mask of ${req.structure} is empty (${support.map((s) => s.name).join(', ')}): at least one image must show the structure`, 'folder');
  const valIds = folder.splits.val ?? [];
  const validation: LabelledImage[] = [];
  const step = Math.max(1, valIds.length / MAX_VALIDATION);
  for (let i = 0; i < valIds.length && validation.length < MAX_VALIDATION; i += step) validation.push(await readLabelledCase(folder, valIds[Math.floor(i)], maxPixels));

  const outcome = await adaptHead(model, support, validation, { seed, progress, embed: embedderFor(ctx.pipeline, model.entry) });
  const entry = model.entry;
  const file: AdapterFile = {
    format: ADAPTER_FORMAT,
    format_version: ADAPTER_FORMAT_VERSION,
    id,
    slug: req.structure,
    name,
    synonyms,
    modality: folder.modality ?? null,
    description: `${name}, taught to ${modelId} from ${support.length} labelled image${support.length === 1 ? '' : 's'} of ${folder.name}.`,
    base_model: { id: modelId, model_files_sha256: modelFilesFingerprint(entry.files) },
    made: {
      k: support.length,
      seed,
      support: support.map((s) => s.name),
      source: { dataset: folder.id, sha256: folder.sha256 },
      variants: DEFAULT_VARIANTS,
      mirror: false,
      steps: DEFAULT_TRAIN.steps,
      heads: outcome.heads.length,
      seconds: Math.round(outcome.seconds * 10) / 10,
      cells: outcome.cells,
      created_at: new Date().toISOString(),
      promptseg_version: ctx.version,
    },
    calibration: outcome.calibration,
    familiarity: { count: outcome.familiarity.embeddings.length, dims: outcome.familiarity.embeddings[0].length, embeddings: encodeFloats(outcome.familiarity.embeddings), threshold: outcome.familiarity.threshold },
    validation: outcome.validation ? { images: outcome.validation.images, dice_mean: outcome.validation.dice_mean, dice_ci95: bootstrapCi(outcome.validation.dice) } : null,
    heads: outcome.heads.map((h) => ({ inputs: h.inputs, hidden: h.hidden, ...encodeHead(h) })),
  };
  return adapters.add(file);
}

/** What callers see of an adapter (list_adapters, list_structures, describe_model, job results). */
export function adapterSummary(a: LoadedAdapter) {
  const f = a.file;
  return {
    id: f.id,
    structure: f.slug,
    name: f.name,
    synonyms: f.synonyms,
    modality: f.modality,
    model: f.base_model.id,
    k: f.made.k,
    seed: f.made.seed,
    source: f.made.source,
    created_at: f.made.created_at,
    calibrated_on: f.calibration.fitted_on,
    validation: f.validation,
  };
}
