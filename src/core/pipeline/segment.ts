import { createHash } from 'node:crypto';
import { fail } from '../errors.js';
import { readPromptText, type PromptText } from '../prompt-text.js';
import { checkpoint, yieldTurn } from './cancel.js';
import type { FloatGrid, RasterImage } from '../image/raster.js';
import { keepLargestComponent, type MaskStats } from '../image/mask-stats.js';
import type { ModelRegistry } from '../models/registry.js';
import type { ImageFeatures } from '../models/model.js';
import type { ModelEntry } from '../models/manifest.js';
import { sigmoid, type UncertaintySummary } from '../trust/scores.js';
import { DEFAULT_THRESHOLDS, type Reason, type Verdict } from '../trust/verdict.js';
import { calibratedPresence, loadCalibration, logit, modelFilesFingerprint, oodScore, platt, standardise, type Calibration, type OodStats } from '../trust/calibration.js';
import type { Embedder } from '../adapters/adapt.js';
import path from 'node:path';
import type { Structure, Vocabulary } from '../vocabulary.js';
import { Lru } from './lru.js';
import { appearanceDescriptor } from '../trust/appearance.js';
import { wholeImageFeatures, type Look } from './model-views.js';
import { mergeDrawn, type Pass, type PassState, type PromptPlan } from './passes/pass.js';
import { LOOK_PASSES, planRequest, REDRAW_PASSES } from './plan.js';
import { maskResult, probabilityMap, type MaskTrust } from './mask-result.js';
import type { AdapterSet, LoadedAdapter } from '../adapters/adapter-set.js';
import { adapterPass } from './adapter-pass.js';
import { readGenericWord, unreadResult, type GenericResolution } from './generic-words.js';

/** What the pipeline needs; created once per process and shared by every front door. */
export interface PipelineContext {
  registry: ModelRegistry;
  vocabulary: Vocabulary;
  featureCache: Lru<string, ImageFeatures>;
  textCache: Lru<string, Float32Array>;
  /** Fitted calibration per model id (undefined when the model has none, or only a stale one). */
  calibrations: Map<string, Calibration | undefined>;
  /** Models whose calibration file was fitted on other model files (a re-export since): it is not applied. */
  staleCalibrations: Set<string>;
  /** Structures taught to the models from labelled images (adapters); none when unset. */
  adapters?: AdapterSet;
}

export function createPipelineContext(registry: ModelRegistry, vocabulary: Vocabulary, cacheImages: number): PipelineContext {
  return { registry, vocabulary, featureCache: new Lru(cacheImages * 4), textCache: new Lru(2048), calibrations: new Map(), staleCalibrations: new Set() };
}

/** The model's fitted calibration, read once from the file its manifest entry names. */
export function calibrationFor(ctx: PipelineContext, entry: ModelEntry): Calibration | undefined {
  if (!ctx.calibrations.has(entry.id)) {
    const file = entry.calibration ? path.join(ctx.registry.dirOf(entry), entry.calibration) : undefined;
    const cal = file ? loadCalibration(file) : undefined;
    // a calibration fitted on other model files (the model was re-exported since) would misstate
    // every probability and threshold: it is set aside and responses say so
    const current = cal && cal.fitted_on.model_files_sha256 === modelFilesFingerprint(entry.files) ? cal : undefined;
    if (cal && !current) ctx.staleCalibrations.add(entry.id);
    ctx.calibrations.set(entry.id, current);
  }
  return ctx.calibrations.get(entry.id);
}

export interface SegmentRequest {
  image: RasterImage;
  prompts: string[];
  modelId?: string;
  /** Pixel probability threshold for the mask (0..1); default: the structure's threshold fitted on val (calibration's mask_threshold), else 0.5. */
  threshold?: number;
  /** Use the fitted calibration (default true); false gives the model's raw scores, for fitting. */
  calibrated?: boolean;
  /** Text-side test-time augmentation: paraphrases per prompt, averaged (0 = off). */
  tta?: number;
  /**
   * Image-side test-time augmentation: transformed copies of the image (flips only where laterality
   * allows; of its crop for a prompt that took the second look), averaged. A number applies to every prompt (0 = off); 'auto' (default) gives each
   * structure the count its calibration found to raise val Dice (none for the others); a record
   * gives counts by structure slug. Counts from a table skip prompts whose first look has raw
   * presence under 0.1.
   */
  ttaImage?: number | 'auto' | Record<string, number>;
  /** Nominal recall of a conformal mask ("0.9"): the threshold fitted per structure on val replaces `threshold`. */
  conformalRecall?: string;
  /**
   * A second, closer look at small structures (a crop around the first mask, run again): 'auto'
   * (default) for the structures whose calibration found it helps on val, true for every eligible
   * structure, false never, or a list of structure slugs.
   */
  zoom?: boolean | 'auto' | string[];
  /**
   * Keep only the mask's largest connected component: 'auto' (default) for the structures whose
   * calibration found it raises val Dice, true for every vocabulary structure, false never.
   */
  largestComponent?: boolean | 'auto';
  /** A box/point model (SAM family) that redraws each produced mask from its box; 'none' turns off the model's default (`refine_with`). */
  refine?: string;
  /** Generic words (lesion, tumour, mass...): 'resolve' (default) reads them as the finding the image's kind is labelled with; 'literal' sends them to the model as they are. */
  genericWords?: 'resolve' | 'literal';
  /**
   * Redraw masks with the model's specialist for the structure (an image encoder and mask decoder
   * fine-tuned on it; presence stays the first look's): 'auto' (default) where the calibration found
   * it raises val Dice, true wherever the model has one, false never, or a list of structure slugs.
   */
  specialist?: boolean | 'auto' | string[];
  /** For a structure that several specialists may redraw: which one (slug -> specialist name), in place of the calibration's choice (the calibration's own trials set it). */
  specialistNames?: Record<string, string>;
  /**
   * The k-NN statistics of the pooled embedding that tell which training set the image lies nearest,
   * for structures two networks answer for on different kinds of image (image-routing.ts): by
   * default the model's calibration's, with calibrated false too (without a current calibration the
   * model's own network answers for them everywhere); null: none; the calibration passes the ones it fits.
   */
  nearestSetStatistics?: OodStats | null;
}

/** How a mask was redrawn by a box-prompted model. */
export interface Refinement {
  model: string;
  /** [x1, y1, x2, y2] in image pixels, the text model's mask box with a small margin. */
  box: [number, number, number, number];
  /** The region model's predicted IoU for the mask it drew. */
  iou: number;
}

export interface ImageAssessment {
  /** How far the image lies from the training images, as a ratio to the flag threshold (> 1 = flagged): the larger of the embedding and appearance ratios; null without calibration. */
  oodScore: number | null;
  /** 1 when a calibration gives OOD statistics (the score is a ratio to its threshold), else null. */
  oodThreshold: number | null;
  /** The two ratios behind oodScore: pooled model embedding, and model-free appearance statistics. */
  oodParts: { embedding: number | null; appearance: number | null };
  nearestTrainingSet: string | null;
  outOfDistribution: boolean;
  /** Global pooled image embedding (whole-image pass). */
  embedding: Float32Array;
  /** Model-free appearance descriptor of the image (src/core/trust/appearance.ts). */
  appearance: Float32Array;
}

/** Out-of-distribution assessment from the calibration's k-NN statistics (embedding and appearance). */
export function assessImage(cal: Calibration | undefined, embedding: Float32Array, appearance: Float32Array): ImageAssessment {
  const e = cal?.ood && embedding.length ? oodScore(embedding, cal.ood) : undefined;
  const a = cal?.appearance ? oodScore(appearance, cal.appearance) : undefined;
  const re = e ? e.score / cal!.ood!.threshold : null;
  const ra = a ? a.score / cal!.appearance!.threshold : null;
  const ratios = [re, ra].filter((v): v is number => v !== null);
  const worst = ratios.length ? Math.max(...ratios) : null;
  return {
    oodScore: worst,
    oodThreshold: worst === null ? null : 1,
    oodParts: { embedding: re, appearance: ra },
    nearestTrainingSet: e?.nearest ?? a?.nearest ?? null,
    outOfDistribution: worst !== null && worst > 1,
    embedding,
    appearance,
  };
}

export interface PromptResult {
  prompt: string;
  structure: { slug: string; name: string; modality: string } | null;
  mode: 'whole' | 'tiled';
  presence: number;
  /** Presence from the model before calibration. */
  presenceRaw: number;
  /** The pixel threshold the mask used (the conformal one when asked). */
  maskThreshold: number;
  maskProduced: boolean;
  predictedQuality: number;
  similarity: number;
  stats: MaskStats;
  areaMm2: number | null;
  uncertainty: UncertaintySummary;
  verdict: Verdict;
  reasons: Reason[];
  /** 1 byte per original pixel, 1 = inside */
  mask: Uint8Array;
  /** Pixel logits at the image size; probability = sigmoid(logit / temperature) (probabilityMap makes the map). */
  logits: FloatGrid;
  /** The pixel temperature the probabilities use (the calibration's, 1 for raw or redrawn scores). */
  temperature: number;
  /** With TTA: per-pixel standard deviation of the probability across paraphrases. */
  ttaStd?: Float32Array;
  /** Set when a box-prompted model redrew the mask (refine). */
  refinedBy?: Refinement;
  /** True when the mask comes from the second, closer look at a crop. */
  zoomed?: boolean;
  /** The specialist (manifest `specialists`) that drew the mask, when one did. */
  specialist?: string;
  /** The specialist that drew the first look, whose presence and quality these are (one that answers for the structure altogether), when not the model's own network. */
  answeredBy?: string;
  /** The adapter (a structure taught from labelled images) that drew the mask, when one did. */
  adapter?: string;
  /** Set when the prompt was a generic word (lesion, tumour...): how it was read on this image. */
  resolution?: GenericResolution;
  /** True when only the mask's largest connected component was kept (smaller ones were dropped). */
  largestComponentOnly?: boolean;
}

export type StageName = 'preprocess' | 'encode_image' | 'encode_text' | 'decode_mask' | 'refine' | 'postprocess';

export interface SegmentResult {
  modelId: string;
  width: number;
  height: number;
  imageSha256: string;
  results: PromptResult[];
  image: ImageAssessment;
  /** fitted: applied; stale: the model's calibration was fitted on other model files and is not applied (run calibrate); none: there is none. */
  calibration: 'fitted' | 'stale' | 'none';
  /** Test-time augmentation that ran: paraphrases per prompt and image transforms. */
  tta?: { paraphrases: number; imageTransforms: string[] };
  timingsMs: Record<StageName, number>;
  cache: { imageFeatures: 'hit' | 'miss' | 'partial' };
}

const now = () => performance.now();

/**
 * Text-prompted segmentation of one image for one or more prompts: the model's own structures;
 * generic words (lesion, tumour...) read by what the image is (generic-words.ts); and the
 * structures adapters taught the model (adapter-pass.ts); all on the same cached image features.
 */
export async function segment(ctx: PipelineContext, req: SegmentRequest, slot: ModelSlot = directly): Promise<SegmentResult> {
  const modelId = req.modelId ?? ctx.registry.defaultId;
  const texts = req.prompts.map((p, i) => readPromptText(p, i));
  const adapter = texts.map((t) => adapterNamed(ctx, t, modelId));
  const generic = texts.map((t, i) => (adapter[i] || t.markup || req.genericWords === 'literal' ? undefined : ctx.vocabulary.genericWord(t.text)));
  if (!adapter.some(Boolean) && !generic.some(Boolean)) return segmentWithModel(ctx, req, slot);
  if (req.conformalRecall !== undefined && adapter.some(Boolean)) fail('invalid_argument', `adapters have no conformal thresholds (${adapter.filter(Boolean).map((a) => a!.file.name).join(', ')}); ask without conformal_recall`, 'conformal_recall');
  const own = req.prompts.map((_, i) => i).filter((i) => !adapter[i] && !generic[i]);
  const base = await segmentWithModel(ctx, { ...req, prompts: own.map((i) => req.prompts[i]) }, slot);
  const results: PromptResult[] = new Array(req.prompts.length);
  own.forEach((i, k) => (results[i] = base.results[k]));
  const timings = { ...base.timingsMs };
  // the base request encodes the image even with no prompt of its own (its first look gives the pooled embedding)
  let cached = base.cache.imageFeatures !== 'miss';

  // generic words and shared names: the structures they can mean are scanned once, first looks only
  // (their presence), each word read as the one found (or by the image's nearest training set), then
  // asked by its name
  let presence: Record<string, number> = {};
  if (generic.some(Boolean)) {
    const candidates = [...new Map(generic.filter((w): w is string => !!w).flatMap((w) => ctx.vocabulary.genericCandidates(w)).map((c) => [c.slug, c])).values()];
    const scan = await segmentWithModel(ctx, { image: req.image, modelId, prompts: candidates.map((c) => c.name), calibrated: req.calibrated, nearestSetStatistics: req.nearestSetStatistics, ttaImage: 0, zoom: false, specialist: false, largestComponent: false, refine: 'none' }, slot);
    for (const k of Object.keys(timings) as StageName[]) timings[k] += scan.timingsMs[k];
    presence = Object.fromEntries(candidates.map((c, k) => [c.slug, Math.round(scan.results[k].presence * 1e4) / 1e4]));
  }
  const presenceOf = (w: string) => Object.fromEntries(ctx.vocabulary.genericCandidates(w).map((c) => [c.slug, presence[c.slug]]));
  const read = generic.map((w) => (w ? readGenericWord(ctx.vocabulary, w, base.image, presenceOf(w)) : undefined));
  const asked = read.map((r, i) => (r?.structure ? i : -1)).filter((i) => i >= 0);
  if (asked.length) {
    const more = await segmentWithModel(ctx, { ...req, prompts: asked.map((i) => read[i]!.structure!.name) }, slot);
    for (const k of Object.keys(timings) as StageName[]) timings[k] += more.timingsMs[k];
    asked.forEach((i, k) => (results[i] = { ...more.results[k], prompt: texts[i].text }));
  }
  for (const [i, r] of read.entries()) {
    if (!r) continue;
    results[i] ??= await unreadResult(texts[i].text, req.image, r.resolution);
    results[i].resolution = r.resolution;
  }

  // adapters: their heads on the model's features of the whole image
  const taught = adapter.map((a, i) => (a ? i : -1)).filter((i) => i >= 0);
  if (taught.length) {
    const model = ctx.registry.get(modelId);
    const f = await slot(() => wholeImageFeatures({ ctx, model, entry: model.entry, timings, hit: (h) => (cached &&= h) }, req.image, base.imageSha256));
    const t = now();
    const extra = await adapterPass(model, f, req.image, taught.map((i) => ({ prompt: texts[i].text, adapter: adapter[i]! })), { threshold: req.threshold, largestComponent: req.largestComponent, embed: embedderFor(ctx, model.entry) });
    timings.decode_mask += now() - t;
    taught.forEach((i, k) => (results[i] = extra[k]));
  }
  for (const k of Object.keys(timings) as StageName[]) timings[k] = Math.round(timings[k] * 100) / 100;
  const imageFeatures = base.results.length === 0 ? (cached ? 'hit' : 'miss') : cached ? base.cache.imageFeatures : 'partial';
  return { ...base, results, timingsMs: timings, cache: { imageFeatures } };
}

/** How adapters compare pooled embeddings: standardised by the model's calibration's out-of-distribution statistics, where it has them. */
export function embedderFor(ctx: PipelineContext, entry: ModelEntry): Embedder | undefined {
  const ood = calibrationFor(ctx, entry)?.ood;
  return ood ? (e) => standardise(e, ood.mean, ood.std) : undefined;
}

/** The adapter of this model a prompt names, unless a longer vocabulary phrase names a built-in structure in it. */
function adapterNamed(ctx: PipelineContext, text: PromptText, modelId: string): LoadedAdapter | undefined {
  if (!ctx.adapters || text.markup) return undefined;
  const a = ctx.adapters.match(text.text, modelId);
  if (!a) return undefined;
  const v = ctx.vocabulary.matchPhrase(text.text);
  return v && v.phrase.length > a.phrase.length ? undefined : a.adapter;
}

/**
 * Runs the work that needs the model (a slot of the service's inference queue, say); what follows
 * (masks, statistics, trust) runs outside it, so the next request's model work need not wait for it.
 */
export type ModelSlot = <T>(work: () => Promise<T>) => Promise<T>;
const directly: ModelSlot = (work) => work();

/**
 * Text-prompted segmentation of one image by the model alone (segment() adds adapters' prompts and
 * generic words): each prompt planned (plan.ts), its members drawn by the look passes, averaged,
 * redrawn by the redrawing passes (all of that in the model slot), then trust and post-processing
 * once per prompt.
 */
export async function segmentWithModel(ctx: PipelineContext, req: SegmentRequest, slot: ModelSlot = directly): Promise<SegmentResult> {
  const { s, assessment } = await slot(async () => {
    const s = await planRequest(ctx, req);
    for (const pass of LOOK_PASSES) await runPass(s, pass);
    const t = now();
    await mergeMembers(s);
    const assessment = assessmentOf(s.image, s.cal, s.embedding ?? new Float32Array(0), appearanceOf(s.image));
    s.run.timings.postprocess += now() - t;
    for (const pass of REDRAW_PASSES) await runPass(s, pass);
    return { s, assessment };
  });
  const { image, cal, run } = s;
  const t = now();
  const results: PromptResult[] = [];
  for (const p of s.prompts) {
    await checkpoint(); // full-resolution post-processing is the slow part on large images
    results.push(await finishPrompt(s, p, assessment));
  }
  run.timings.postprocess += now() - t;
  const { timings } = run;
  for (const k of Object.keys(timings) as StageName[]) timings[k] = Math.round(timings[k] * 100) / 100;
  const { hits, misses } = s.featureCache;
  return {
    modelId: run.entry.id,
    width: image.width,
    height: image.height,
    imageSha256: s.imageSha256,
    results,
    image: assessment,
    calibration: cal ? 'fitted' : ctx.staleCalibrations.has(run.entry.id) ? 'stale' : 'none',
    tta: { paraphrases: req.tta ?? 0, imageTransforms: s.imageTransforms },
    timingsMs: timings,
    cache: { imageFeatures: misses === 0 ? 'hit' : hits === 0 ? 'miss' : 'partial' },
  };
}

async function runPass(s: PassState, pass: Pass): Promise<void> {
  const idx = pass.serves(s);
  if (idx.length || pass.runsWithoutPrompts) mergeDrawn(s, await pass.run(s, idx));
}

/**
 * Each prompt with more than one member (paraphrases, image copies): its logits, presence,
 * quality and similarity averaged over them, and the per-pixel variance of their probabilities
 * (what the uncertainty map and the TTA disagreement report).
 */
async function mergeMembers(s: PassState): Promise<void> {
  const temperature = s.cal ? s.cal.pixel_temperature : 1;
  for (const p of s.prompts) {
    const members = p.members, n = members.length;
    if (n < 2) continue;
    await checkpoint(); // a full-resolution pass over every member of the prompt
    const data: Float32Array[] = [];
    for (const m of members) {
      data.push(m.logits.data); // a deferred grid is made here
      await yieldTurn();
    }
    const size = data[0].length;
    const mean = new Float32Array(size), vr = new Float32Array(size);
    for (let q = 0; q < size; q++) {
      if ((q & 0x3ffff) === 0 && q) await yieldTurn(); // every 256 K pixels: members x sigmoid is slow on a large image
      let s1 = 0, s2 = 0, z = 0;
      for (const d of data) {
        const v = sigmoid(d[q] / temperature);
        s1 += v;
        s2 += v * v;
        z += d[q];
      }
      mean[q] = z / n;
      vr[q] = Math.max(0, s2 / n - (s1 / n) ** 2);
    }
    const avg = (f: (m: Look) => number) => members.reduce((a, m) => a + f(m), 0) / n;
    p.members = [{ logits: { width: members[0].logits.width, height: members[0].logits.height, data: mean }, presence: avg((m) => m.presence), iou: avg((m) => m.iou), similarity: avg((m) => m.similarity) }];
    p.variance = vr;
  }
}

/** A prompt's result from its merged look: the mask threshold (fitted, conformal or asked), the largest component where chosen, trust. */
async function finishPrompt(s: PassState, p: PromptPlan, assessment: ImageAssessment): Promise<PromptResult> {
  const { req, cal } = s;
  const slug = p.structure?.slug;
  let maskThreshold = req.threshold ?? (slug ? cal?.mask_threshold?.[slug] : undefined) ?? 0.5;
  if (req.conformalRecall !== undefined) {
    const th = slug ? cal!.conformal[slug]?.[req.conformalRecall] : undefined;
    if (th === undefined) fail('invalid_argument', `no conformal threshold at recall ${req.conformalRecall} for prompt "${p.text}" (conformal masks need a vocabulary structure; fitted levels: ${Object.keys(Object.values(cal!.conformal)[0] ?? {}).join(', ')})`, 'conformal_recall');
    maskThreshold = th!;
  }
  // a conformal mask is for not missing the structure: it is drawn even where the model judges the
  // structure absent (the verdict still says so), and keeps every pixel over its threshold (its
  // recall guarantee is about them all)
  const lcc = req.conformalRecall === undefined && !!slug && (req.largestComponent === true || ((req.largestComponent ?? 'auto') === 'auto' && !!cal?.largest_component?.includes(slug)));
  const look = p.members[0];
  const r = await postprocess(p.text, p.structure, p.mode, look, s.image, maskThreshold, cal, p.answeredBy, assessment, {
    refinedIou: p.refinedBy?.iou,
    notText: p.markup,
    ignorePresence: req.conformalRecall !== undefined,
    largestComponentOnly: lcc,
  });
  if (p.refinedBy) r.refinedBy = p.refinedBy;
  if (p.closer) r.zoomed = true;
  if (p.specialist) r.specialist = p.specialist;
  if (p.answeredBy) r.answeredBy = p.answeredBy;
  if (p.variance) {
    r.ttaStd = p.variance.map(Math.sqrt);
    let sum = 0, cnt = 0;
    for (let q = 0; q < r.mask.length; q++) if (r.mask[q]) { sum += r.ttaStd[q]; cnt++; }
    r.uncertainty.ttaDisagreement = cnt ? sum / cnt : 0;
  }
  return r;
}

/**
 * Per decoded image (the same object, reused for every prompt sent by image_id), what does not
 * depend on the prompt: its content hash (the feature cache's key) and its appearance descriptor.
 * Held weakly: they go with the image.
 */
const perImage = new WeakMap<Uint8Array, { key?: string; appearance?: Float32Array; assessed?: { cal: Calibration | undefined; embedding: Float32Array; assessment: ImageAssessment } }>();
const memo = (image: RasterImage) => {
  let m = perImage.get(image.data);
  if (!m) perImage.set(image.data, (m = {}));
  return m;
};

/** sha256 of an image's pixels and size. */
export function contentKey(image: RasterImage): string {
  const m = memo(image);
  return (m.key ??= createHash('sha256').update(image.data).update(`${image.width}x${image.height}`).digest('hex'));
}

/** The image's OOD assessment, kept while the calibration and the image embedding (cached features) stay the same. */
function assessmentOf(image: RasterImage, cal: Calibration | undefined, embedding: Float32Array, appearance: Float32Array): ImageAssessment {
  const m = memo(image);
  if (m.assessed && m.assessed.cal === cal && m.assessed.embedding === embedding) return m.assessed.assessment;
  const assessment = assessImage(cal, embedding, appearance);
  m.assessed = { cal, embedding, assessment };
  return assessment;
}

function appearanceOf(image: RasterImage): Float32Array {
  const m = memo(image);
  return (m.appearance ??= appearanceDescriptor(image));
}

/** A text prompt's result: the model's scores through the fitted calibration, then maskResult. */
function postprocess(prompt: string, structure: Structure | undefined, mode: 'whole' | 'tiled', look: Look, image: RasterImage, threshold: number, cal: Calibration | undefined, answeredBy: string | undefined, assessment: ImageAssessment, o: { refinedIou?: number; notText: boolean; ignorePresence: boolean; largestComponentOnly: boolean }): Promise<PromptResult> {
  const { logits, similarity } = look;
  // a specialist that answered for the structure altogether has its own score scaling
  const scores = (answeredBy ? cal?.specialist_scores?.[answeredBy] : undefined) ?? cal;
  const presenceLogit = look.presence, iouLogit = look.iou;
  const presenceRaw = sigmoid(presenceLogit);
  return maskResult(prompt, mode, logits, image, threshold, {
    structure,
    inVocabulary: !!structure,
    presence: cal ? calibratedPresence(cal, answeredBy, presenceLogit, assessment.embedding, structure?.datasets) : presenceRaw,
    presenceRaw,
    // a mask redrawn by a region model carries that model's predicted IoU and its own, unscaled logits
    quality: o.refinedIou ?? (scores ? platt(iouLogit, scores.quality) : sigmoid(iouLogit)),
    temperature: o.refinedIou !== undefined || !cal ? 1 : cal.pixel_temperature,
    similarity,
    thresholds: cal ? { ...DEFAULT_THRESHOLDS, ...cal.thresholds, uncertainFraction: cal.thresholds.uncertain_fraction, oodReject: cal.thresholds.ood_reject ?? 1 } : DEFAULT_THRESHOLDS,
    ignorePresence: o.ignorePresence,
    notText: o.notText,
    largestComponentOnly: o.largestComponentOnly,
    assessment,
  });
}

export { boxOf } from './mask-box.js';
export { tileOrigins } from './model-views.js';
export { logit, keepLargestComponent, maskResult, probabilityMap, type MaskTrust };
