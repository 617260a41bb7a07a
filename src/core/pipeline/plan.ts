import { fail } from '../errors.js';
import { answeringSpecialist } from '../models/manifest.js';
import { readPromptText } from '../prompt-text.js';
import type { Structure } from '../vocabulary.js';
import { networksBySet } from './image-routing.js';
import { IMAGE_TRANSFORMS } from './image-tta.js';
import { encodeTexts, type ModelRun } from './model-views.js';
import { firstLook } from './passes/first-look.js';
import { imageCopies } from './passes/image-copies.js';
import type { Pass, PassState } from './passes/pass.js';
import { refinePass } from './passes/refine.js';
import { secondLook } from './passes/second-look.js';
import { specialistPass } from './passes/specialist.js';
import { calibrationFor, contentKey, type PipelineContext, type SegmentRequest, type StageName } from './segment.js';

/** The passes that draw each prompt's members, in order (each may use what the earlier ones drew). */
export const LOOK_PASSES: Pass[] = [firstLook, specialistPass, secondLook, imageCopies];
/** The passes that redraw a prompt's merged logits, in order. */
export const REDRAW_PASSES: Pass[] = [refinePass];

/** Paraphrase templates for text-side test-time augmentation (training templates: the model knows them). */
const TTA_TEMPLATES = ['the {s}', 'segment the {s}', '{s} segmentation', 'outline the {s}', 'where is the {s}', 'mask of the {s}', 'highlight the {s}', 'locate the {s}'];

function paraphrases(prompt: string, structure: Structure | undefined, n: number): string[] {
  if (n === 0) return [];
  const names = structure ? [structure.name, ...structure.synonyms] : [prompt];
  return TTA_TEMPLATES.slice(0, n).map((t, k) => t.replace('{s}', names[k % names.length]));
}

/** Checks a request's options, then plans its prompts (structure, view, paraphrases) and encodes their texts. */
export async function planRequest(ctx: PipelineContext, req: SegmentRequest): Promise<PassState> {
  const texts = req.prompts.map(readPromptText);
  const model = ctx.registry.get(req.modelId ?? ctx.registry.defaultId);
  const entry = model.entry;
  await model.load();
  const threshold = req.threshold ?? 0.5;
  if (!(threshold > 0 && threshold < 1)) fail('bad_input', 'threshold must be between 0 and 1 (exclusive)', 'threshold');
  const tta = req.tta ?? 0;
  if (!(Number.isInteger(tta) && tta >= 0 && tta <= TTA_TEMPLATES.length)) fail('invalid_argument', `tta must be a whole number from 0 to ${TTA_TEMPLATES.length}`, 'tta');
  const ttaImage = req.ttaImage ?? 'auto';
  const ttaCounts = typeof ttaImage === 'number' ? [ttaImage] : ttaImage === 'auto' ? [] : Object.values(ttaImage);
  if (!ttaCounts.every((n) => Number.isInteger(n) && n >= 0 && n <= IMAGE_TRANSFORMS.length)) fail('invalid_argument', `tta_image must be 'auto' or a whole number from 0 to ${IMAGE_TRANSFORMS.length}`, 'tta_image');
  const cal = req.calibrated === false ? undefined : calibrationFor(ctx, entry);
  if (req.conformalRecall !== undefined && !cal) fail('invalid_argument', `model ${entry.id} has no fitted conformal thresholds`, 'conformal_recall');
  const timings: Record<StageName, number> = { preprocess: 0, encode_image: 0, encode_text: 0, decode_mask: 0, refine: 0, postprocess: 0 };
  const prompts = texts.map((p, index) => {
    const structure = ctx.vocabulary.match(p.text);
    const answeredBy = answeringSpecialist(entry, structure?.slug)?.name;
    const bySet = networksBySet(entry, structure);
    return { index, text: p.text, markup: p.markup, structure, mode: (structure?.scale === 'tiled' ? 'tiled' : 'whole') as 'whole' | 'tiled', paraphrases: paraphrases(p.text, structure, tta), embeds: [], members: [], ...(answeredBy ? { answeredBy, specialist: answeredBy } : {}), ...(bySet ? { bySet } : {}) };
  });
  // text embeddings (cached per model and prompt): every prompt, then each prompt's paraphrases
  const t = performance.now();
  const embeds = await encodeTexts(ctx, model, [...prompts.map((p) => p.text), ...prompts.flatMap((p) => p.paraphrases)]);
  timings.encode_text += performance.now() - t;
  let k = prompts.length;
  for (const p of prompts) (p.embeds as Float32Array[]).push(embeds[p.index], ...p.paraphrases.map(() => embeds[k++]));
  const featureCache = { hits: 0, misses: 0 };
  const run: ModelRun = { ctx, model, entry, timings, hit: (h) => (h ? featureCache.hits++ : featureCache.misses++) };
  // which training set the image lies nearest routes structures two networks answer for: the calibration's statistics, with raw scores too
  const nearestSetStats = req.nearestSetStatistics === undefined ? calibrationFor(ctx, entry)?.ood : (req.nearestSetStatistics ?? undefined);
  return { run, req, image: req.image, imageSha256: contentKey(req.image), cal, prompts, imageTransforms: [], featureCache, ...(nearestSetStats ? { nearestSetStats } : {}) };
}
