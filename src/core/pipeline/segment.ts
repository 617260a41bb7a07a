import { createHash } from 'node:crypto';
import { fail } from '../errors.js';
import { readPromptText, type PromptText } from '../prompt-text.js';
import { checkpoint, yieldTurn } from './cancel.js';
import type { FloatGrid, RasterImage } from '../image/raster.js';
import { letterbox, letterboxGeometry, mapGrid, resizeRgb, roundHalfEven } from '../image/resize.js';
import { renderWindow } from '../image/dicom.js';
import { keepLargestComponent, type MaskStats } from '../image/mask-stats.js';
import type { ModelRegistry } from '../models/registry.js';
import type { ImageFeatures, SegmentationModel } from '../models/model.js';
import type { ModelEntry } from '../models/manifest.js';
import { sigmoid, type UncertaintySummary } from '../trust/scores.js';
import { DEFAULT_THRESHOLDS, type Reason, type Verdict } from '../trust/verdict.js';
import { loadCalibration, logit, modelFilesFingerprint, oodScore, platt, standardise, type Calibration } from '../trust/calibration.js';
import type { Embedder } from '../adapters/adapt.js';
import path from 'node:path';
import type { Structure, Vocabulary } from '../vocabulary.js';
import { Lru } from './lru.js';
import { appearanceDescriptor } from '../trust/appearance.js';
import { IMAGE_TRANSFORMS, ORIENTATION_FREE_MODALITIES, THORAX_REGIONS, type ImageTransform } from './image-tta.js';
import { cropSquare, pasteSquare, zoomSquare, type Square } from './zoom.js';
import { maskResult, type MaskTrust } from './mask-result.js';
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
   * fine-tuned on it; presence stays the generalist's): 'auto' (default) where the calibration found
   * it raises val Dice, true wherever the model has one, false never, or a list of structure slugs.
   */
  specialist?: boolean | 'auto' | string[];
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
  /** Pixel probabilities at original size */
  probability: Float32Array;
  /** With TTA: per-pixel standard deviation of the probability across paraphrases. */
  ttaStd?: Float32Array;
  /** Set when a box-prompted model redrew the mask (refine). */
  refinedBy?: Refinement;
  /** True when the mask comes from the second, closer look at a crop. */
  zoomed?: boolean;
  /** The specialist (manifest `specialists`) that drew the mask, when one did. */
  specialist?: string;
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
export async function segment(ctx: PipelineContext, req: SegmentRequest): Promise<SegmentResult> {
  const modelId = req.modelId ?? ctx.registry.defaultId;
  const texts = req.prompts.map((p, i) => readPromptText(p, i));
  const adapter = texts.map((t) => adapterNamed(ctx, t, modelId));
  const generic = texts.map((t, i) => (adapter[i] || t.markup || req.genericWords === 'literal' ? undefined : ctx.vocabulary.genericWord(t.text)));
  if (!adapter.some(Boolean) && !generic.some(Boolean)) return segmentWithModel(ctx, req);
  if (req.conformalRecall !== undefined && adapter.some(Boolean)) fail('invalid_argument', `adapters have no conformal thresholds (${adapter.filter(Boolean).map((a) => a!.file.name).join(', ')}); ask without conformal_recall`, 'conformal_recall');
  const own = req.prompts.map((_, i) => i).filter((i) => !adapter[i] && !generic[i]);
  const base = await segmentWithModel(ctx, { ...req, prompts: own.map((i) => req.prompts[i]) });
  const results: PromptResult[] = new Array(req.prompts.length);
  own.forEach((i, k) => (results[i] = base.results[k]));
  const timings = { ...base.timingsMs };
  let cached = base.cache.imageFeatures !== 'miss' || base.results.length === 0;

  // generic words: the findings they can mean are scanned once, first looks only (their presence),
  // the word read as the one found (or by the image's nearest training set), then asked by its name
  let presence: Record<string, number> = {};
  if (generic.some(Boolean)) {
    const candidates = ctx.vocabulary.genericCandidates();
    const scan = await segmentWithModel(ctx, { image: req.image, modelId, prompts: candidates.map((c) => c.name), calibrated: req.calibrated, ttaImage: 0, zoom: false, specialist: false, largestComponent: false, refine: 'none' });
    for (const k of Object.keys(timings) as StageName[]) timings[k] += scan.timingsMs[k];
    presence = Object.fromEntries(candidates.map((c, k) => [c.slug, Math.round(scan.results[k].presence * 1e4) / 1e4]));
  }
  const read = generic.map((w) => (w ? readGenericWord(ctx.vocabulary, w, base.image, presence) : undefined));
  const asked = read.map((r, i) => (r?.structure ? i : -1)).filter((i) => i >= 0);
  if (asked.length) {
    const more = await segmentWithModel(ctx, { ...req, prompts: asked.map((i) => read[i]!.structure!.name) });
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
    const f = await wholeImageFeatures(ctx, model, req.image, base.imageSha256, timings, (h) => (cached &&= h));
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

/** Text-prompted segmentation of one image by the model alone (adapter-pass.ts's segment() adds adapters' prompts). */
export async function segmentWithModel(ctx: PipelineContext, req: SegmentRequest): Promise<SegmentResult> {
  const promptTexts = req.prompts.map(readPromptText);
  req = { ...req, prompts: promptTexts.map((p) => p.text) };
  const modelId = req.modelId ?? ctx.registry.defaultId;
  const model = ctx.registry.get(modelId);
  const entry = model.entry;
  await model.load();
  const threshold = req.threshold ?? 0.5;
  if (!(threshold > 0 && threshold < 1)) fail('bad_input', 'threshold must be between 0 and 1 (exclusive)', 'threshold');
  const timings: Record<StageName, number> = { preprocess: 0, encode_image: 0, encode_text: 0, decode_mask: 0, refine: 0, postprocess: 0 };
  const { image } = req;
  const imageSha256 = contentKey(image);

  // test-time augmentation on the text side: paraphrases of each prompt reuse the cached image features
  const tta = req.tta ?? 0;
  if (!(Number.isInteger(tta) && tta >= 0 && tta <= TTA_TEMPLATES.length)) fail('invalid_argument', `tta must be a whole number from 0 to ${TTA_TEMPLATES.length}`, 'tta');
  const ttaImage = req.ttaImage ?? 'auto';
  const ttaCounts = typeof ttaImage === 'number' ? [ttaImage] : ttaImage === 'auto' ? [] : Object.values(ttaImage);
  if (!ttaCounts.every((n) => Number.isInteger(n) && n >= 0 && n <= IMAGE_TRANSFORMS.length)) fail('invalid_argument', `tta_image must be 'auto' or a whole number from 0 to ${IMAGE_TRANSFORMS.length}`, 'tta_image');
  const baseStructures = req.prompts.map((p) => ctx.vocabulary.match(p));
  const all = [...req.prompts];
  const owner = req.prompts.map((_, i) => i);
  req.prompts.forEach((p, i) => {
    for (const v of paraphrases(p, baseStructures[i], tta)) {
      all.push(v);
      owner.push(i);
    }
  });

  // text embeddings (cached per model and prompt)
  let t = now();
  const embeds = await encodeTexts(ctx, model, all);
  timings.encode_text += now() - t;

  const structures = owner.map((i) => baseStructures[i]);
  const modes = structures.map((s) => (s?.scale === 'tiled' ? 'tiled' : 'whole') as 'whole' | 'tiled');
  let hits = 0, misses = 0;
  const hit = (h: boolean) => (h ? hits++ : misses++);
  const base = await decodeViews(ctx, model, entry, image, imageSha256, all.map((_, i) => i), structures, modes, embeds, timings, hit);
  const { logits, presenceLogit, iouLogit, similarity } = base;
  const embedding = base.embedding;

  // specialists redraw the masks of their structures; the first look's presence, quality and
  // similarity stand (a specialist has seen only its own structures' images, so it is not asked
  // whether they are there), and a prompt the first look calls clearly absent is not redrawn
  const calSpecialists = req.calibrated === false ? undefined : calibrationFor(ctx, entry)?.specialists;
  const specialistFor = (i: number): string | undefined => {
    const st = baseStructures[i];
    const sp = st && entry.specialists?.find((x) => x.structures.includes(st.slug));
    if (!st || !sp || req.specialist === false || sigmoid(presenceLogit[i]) < EXTRA_PASS_MIN_PRESENCE) return undefined;
    if (req.specialist === true) return sp.name;
    if (Array.isArray(req.specialist)) return req.specialist.includes(st.slug) ? sp.name : undefined;
    return calSpecialists?.includes(st.slug) ? sp.name : undefined;
  };
  const specialist = req.prompts.map((_, i) => specialistFor(i));
  for (const name of new Set(specialist.filter((n): n is string => !!n))) {
    const idx = req.prompts.map((_, i) => i).filter((i) => specialist[i] === name);
    const out = await decodeViews(ctx, model, entry, image, imageSha256, idx, structures, modes, embeds, timings, hit, name);
    for (const i of idx) logits[i] = out.logits[i];
  }

  // the second look: prompts of whole-image structures whose first mask is small are run again on a
  // crop around it (the model was trained on such crops), and the crop's logits replace the first
  // look's inside the crop
  const calZoom = req.calibrated === false ? undefined : calibrationFor(ctx, entry)?.zoom;
  const zoomFor = (i: number) => {
    const st = baseStructures[i];
    if (!st || modes[i] !== 'whole' || req.zoom === false || windowFor(ctx, image, st)) return false;
    if (Array.isArray(req.zoom)) return req.zoom.includes(st.slug);
    return req.zoom === true || (calZoom ?? []).includes(st.slug);
  };
  // per zoomed prompt: its square, the crop, and the first look's logits (image TTA below redraws the crop)
  const closer: ({ sq: Square; crop: RasterImage; first: FloatGrid } | undefined)[] = req.prompts.map(() => undefined);
  for (let i = 0; i < req.prompts.length; i++) {
    if (!zoomFor(i) || sigmoid(presenceLogit[i]) < 0.5) continue;
    const box = boxOf(logits[i], 0, image.width, image.height, 0);
    const sq = box && zoomSquare(box, image.width, image.height, entry.input.size);
    if (!sq) continue;
    const crop = cropSquare(image, sq);
    const out = await runWhole(ctx, model, entry, crop, zoomKey(imageSha256, sq), [embeds[i]], timings, hit, specialist[i]);
    closer[i] = { sq, crop, first: logits[i] };
    logits[i] = pasteSquare(logits[i], out.logits[0], sq);
  }

  // image-side test-time augmentation: each transform is a new image-encoder pass whose logits are
  // mapped back to the original pixels and joined to the prompt's members (with the paraphrases)
  // per prompt: the first tta_image transforms that suit it (no mirroring of lateral or thoracic structures)
  const flipSafe = (st: Structure | undefined) => !!st && !st.laterality && !THORAX_REGIONS.has(st.region);
  // counts from a table (the calibration's under 'auto', or the request's by slug) are spent only on
  // prompts the first look does not already call clearly absent (a polyp asked of a chest X-ray);
  // a count given for every prompt is honoured as given
  const calTta = req.calibrated === false ? undefined : calibrationFor(ctx, entry)?.tta_image;
  const ttaFor = (i: number) => {
    const slug = baseStructures[i]?.slug;
    if (typeof ttaImage === 'number') return ttaImage;
    if (sigmoid(presenceLogit[i]) < EXTRA_PASS_MIN_PRESENCE) return 0;
    const table = ttaImage === 'auto' ? calTta : ttaImage;
    return (slug && table?.[slug]) || 0;
  };
  const orientationFree = (st: Structure | undefined) => !!st && ORIENTATION_FREE_MODALITIES.has(st.modality);
  const suits = (tf: ImageTransform, st: Structure | undefined) => (!tf.flips || flipSafe(st)) && (!tf.orientationFreeOnly || orientationFree(st));
  const allowed = req.prompts.map((_, i) => IMAGE_TRANSFORMS.filter((tf) => suits(tf, baseStructures[i])).slice(0, ttaFor(i)));
  const transforms = IMAGE_TRANSFORMS.filter((tf) => allowed.some((a) => a.includes(tf)));
  for (const tf of transforms) {
    const idx = req.prompts.map((_, i) => i).filter((i) => allowed[i].includes(tf));
    // whole-image prompts see the transformed image; zoomed prompts the transformed crop (averaging a
    // closer look with distant ones would undo it), pasted over the first look as the zoom itself is,
    // and keep the first look's presence, quality and similarity (a crop is chosen to contain the structure)
    // a prompt a specialist redrew has its copies drawn by the specialist too, with the first look's presence
    const wholeIdx = idx.filter((i) => !closer[i]);
    const copy = wholeIdx.length ? tf.apply(image) : undefined;
    const bySpecialist = new Map<string | undefined, DecodedAll>();
    for (const name of new Set(wholeIdx.map((i) => specialist[i]))) {
      const group = wholeIdx.filter((i) => specialist[i] === name);
      bySpecialist.set(name, await decodeViews(ctx, model, entry, copy!, `${imageSha256}:tta:${tf.name}`, group, structures, modes, embeds, timings, hit, name));
    }
    // a copy joins prompt i's members; its scores are the copy's own, or the first look's (scores of: undefined)
    const join = (i: number, g: FloatGrid, scores?: DecodedAll) => {
      logits.push(g);
      presenceLogit.push((scores ?? base).presenceLogit[i]);
      iouLogit.push((scores ?? base).iouLogit[i]);
      similarity.push((scores ?? base).similarity[i]);
      owner.push(i);
    };
    for (const i of idx) {
      await checkpoint();
      const z = closer[i];
      if (z) {
        const c = await runWhole(ctx, model, entry, tf.apply(z.crop), `${zoomKey(imageSha256, z.sq)}:tta:${tf.name}`, [embeds[i]], timings, hit, specialist[i]);
        join(i, pasteSquare(z.first, tf.invert(c.logits[0]), z.sq));
      } else if (specialist[i]) {
        join(i, tf.invert(bySpecialist.get(specialist[i])!.logits[i]));
      } else {
        const out = bySpecialist.get(undefined)!;
        join(i, tf.invert(out.logits[i]), out);
      }
    }
  }

  t = now();
  const cal = req.calibrated === false ? undefined : calibrationFor(ctx, entry);
  const appearance = appearanceOf(image);
  const assessment = assessmentOf(image, cal, embedding ?? new Float32Array(0), appearance);
  if (req.conformalRecall !== undefined && !cal) fail('invalid_argument', `model ${entry.id} has no fitted conformal thresholds`, 'conformal_recall');
  const variance = req.prompts.map(() => undefined as Float32Array | undefined);
  if (tta > 0 || transforms.length > 0) {
    const temperature = cal ? cal.pixel_temperature : 1;
    for (const i of req.prompts.keys()) {
      await checkpoint(); // a full-resolution pass over every member of the prompt
      const members = owner.map((o, j) => (o === i ? j : -1)).filter((j) => j >= 0);
      const n = members.length;
      const g = logits[i];
      const mean = new Float32Array(g.data.length), vr = new Float32Array(g.data.length);
      for (let q = 0; q < g.data.length; q++) {
        if ((q & 0x3ffff) === 0 && q) await yieldTurn(); // every 256 K pixels: members x sigmoid is slow on a large image
        let s1 = 0, s2 = 0, z = 0;
        for (const j of members) {
          const p = sigmoid(logits[j].data[q] / temperature);
          s1 += p;
          s2 += p * p;
          z += logits[j].data[q];
        }
        mean[q] = z / n;
        vr[q] = Math.max(0, s2 / n - (s1 / n) ** 2);
      }
      logits[i] = { width: g.width, height: g.height, data: mean };
      if (n > 1) variance[i] = vr; // a prompt without augmentation has no disagreement to report
      presenceLogit[i] = members.reduce((a, j) => a + presenceLogit[j], 0) / n;
      iouLogit[i] = members.reduce((a, j) => a + iouLogit[j], 0) / n;
      similarity[i] = members.reduce((a, j) => a + similarity[j], 0) / n;
    }
  }
  // refine: a box-prompted model redraws each mask the text model produced, from the mask's box
  const refineId = req.refine === 'none' ? undefined : (req.refine ?? entry.refine_with);
  const refined: (Refinement | undefined)[] = req.prompts.map(() => undefined);
  if (refineId) {
    const region = ctx.registry.getRegion(refineId);
    t = now();
    await region.load();
    const th = cal ? cal.thresholds.presence : DEFAULT_THRESHOLDS.presence;
    const zCut = logit(threshold) * (cal ? cal.pixel_temperature : 1);
    for (let i = 0; i < req.prompts.length; i++) {
      const presence = cal ? platt(presenceLogit[i], cal.presence) : sigmoid(presenceLogit[i]);
      // the box of the largest connected region (as MedCLIP-SAMv2 boxes its saliency): scattered
      // high-scoring pixels elsewhere would otherwise stretch the box over half the image
      const box = presence >= th ? boxOf(logits[i], zCut, image.width, image.height, 0.03, { largestComponent: true }) : undefined;
      if (!box) continue;
      await checkpoint();
      const [m] = await region.segmentRegions(image, imageSha256, [{ box }]);
      logits[i] = m.logits; // the region model's own logits: postprocess leaves them unscaled
      refined[i] = { model: refineId, box, iou: m.iou };
    }
    timings.refine += now() - t;
    t = now();
  }
  const results: PromptResult[] = [];
  for (const [i, prompt] of req.prompts.entries()) {
    await checkpoint(); // full-resolution post-processing is the slow part on large images
    results.push(await finishPrompt(prompt, i));
  }
  async function finishPrompt(prompt: string, i: number): Promise<PromptResult> {
    const slug = structures[i]?.slug;
    let maskThreshold = req.threshold ?? (slug ? cal?.mask_threshold?.[slug] : undefined) ?? threshold;
    if (req.conformalRecall !== undefined) {
      const th = slug ? cal!.conformal[slug]?.[req.conformalRecall] : undefined;
      if (th === undefined) fail('invalid_argument', `no conformal threshold at recall ${req.conformalRecall} for prompt "${prompt}" (conformal masks need a vocabulary structure; fitted levels: ${Object.keys(Object.values(cal!.conformal)[0] ?? {}).join(', ')})`, 'conformal_recall');
      maskThreshold = th!;
    }
    // a conformal mask is for not missing the structure: it is drawn even where the model judges the
    // structure absent (the verdict still says so), which is what its recall guarantee is about
    // a conformal mask keeps every pixel over its threshold (its recall guarantee is about them all)
    const lcc = req.conformalRecall === undefined && !!slug && (req.largestComponent === true || ((req.largestComponent ?? 'auto') === 'auto' && !!cal?.largest_component?.includes(slug)));
    const r = await postprocess(prompt, structures[i], modes[i], logits[i], presenceLogit[i], iouLogit[i], similarity[i], image, maskThreshold, cal, assessment, {
      refinedIou: refined[i]?.iou,
      notText: promptTexts[i].markup,
      ignorePresence: req.conformalRecall !== undefined,
      largestComponentOnly: lcc,
    });
    if (refined[i]) r.refinedBy = refined[i];
    if (closer[i]) r.zoomed = true;
    if (specialist[i]) r.specialist = specialist[i];
    if (variance[i]) {
      r.ttaStd = variance[i]!.map(Math.sqrt);
      let sum = 0, cnt = 0;
      for (let q = 0; q < r.mask.length; q++) if (r.mask[q]) { sum += r.ttaStd[q]; cnt++; }
      r.uncertainty.ttaDisagreement = cnt ? sum / cnt : 0;
    }
    return r;
  }
  timings.postprocess += now() - t;
  for (const k of Object.keys(timings) as StageName[]) timings[k] = Math.round(timings[k] * 100) / 100;
  return {
    modelId,
    width: image.width,
    height: image.height,
    imageSha256,
    results,
    image: assessment,
    calibration: cal ? 'fitted' : ctx.staleCalibrations.has(entry.id) ? 'stale' : 'none',
    tta: { paraphrases: tta, imageTransforms: transforms.map((tf) => tf.name) },
    timingsMs: timings,
    cache: { imageFeatures: misses === 0 ? 'hit' : hits === 0 ? 'miss' : 'partial' },
  };
}


interface DecodedAll {
  logits: FloatGrid[];
  presenceLogit: number[];
  iouLogit: number[];
  similarity: number[];
  embedding?: Float32Array;
}

/** Feature-cache key of a second look's crop. */
const zoomKey = (sha: string, sq: Square) => `${sha}:zoom:${sq.left}:${sq.top}:${sq.side}`;

/**
 * Decodes the prompts `idx` (indices into structures/modes/embeds) on one image: CT from DICOM is
 * seen through each structure's window, thin structures in native tiles, the rest whole.
 */
async function decodeViews(ctx: PipelineContext, model: SegmentationModel, entry: ModelEntry, image: RasterImage, imageSha256: string, idxAll: number[], structures: (Structure | undefined)[], modes: ('whole' | 'tiled')[], embeds: Float32Array[], timings: Record<StageName, number>, hit: (h: boolean) => void, specialist?: string): Promise<DecodedAll> {
  const n = Math.max(0, ...idxAll.map((i) => i + 1));
  const logits: FloatGrid[] = new Array(n);
  const presenceLogit = new Array<number>(n);
  const iouLogit = new Array<number>(n);
  const similarity = new Array<number>(n);
  // CT from DICOM: each structure is seen through its own window (lung, mediastinum, ...) unless the caller set one
  const views = new Map<string, { image: RasterImage; sha: string; idx: number[] }>();
  views.set('default', { image, sha: imageSha256, idx: [] });
  idxAll.forEach((i) => {
    const w = windowFor(ctx, image, structures[i]);
    if (!w) {
      views.get('default')!.idx.push(i);
      return;
    }
    const key = `window:${w[0]}:${w[1]}`;
    if (!views.has(key)) {
      const data = renderWindow(image.dicom!.values!, w, image.dicom!.monochrome1);
      views.set(key, { image: { ...image, data }, sha: `${imageSha256}:${key}`, idx: [] });
    }
    views.get(key)!.idx.push(i);
  });

  let embedding: Float32Array | undefined;
  for (const [key, view] of views) {
    for (const mode of ['whole', 'tiled'] as const) {
      const idx = view.idx.filter((i) => modes[i] === mode);
      // the generalist's default view always runs whole-image once: its pooled embedding feeds the OOD score
      if (!idx.length && !(mode === 'whole' && key === 'default' && !specialist)) continue;
      const e = idx.map((i) => embeds[i]);
      const out = mode === 'whole'
        ? await runWhole(ctx, model, entry, view.image, view.sha, e, timings, hit, specialist)
        : await runTiled(ctx, model, entry, view.image, view.sha, e, timings, hit, specialist);
      if (mode === 'whole' && key === 'default') embedding = out.pooled;
      idx.forEach((i, k) => {
        logits[i] = out.logits[k];
        presenceLogit[i] = out.presence[k];
        iouLogit[i] = out.iou[k];
        similarity[i] = out.similarity[k];
      });
    }
  }

  return { logits, presenceLogit, iouLogit, similarity, embedding };
}

async function encodeTexts(ctx: PipelineContext, model: SegmentationModel, prompts: string[]): Promise<Float32Array[]> {
  const out: (Float32Array | undefined)[] = prompts.map((p) => ctx.textCache.get(`${model.entry.id}\u0000${p}`));
  const missing = [...new Set(prompts.filter((_, i) => !out[i]))];
  if (missing.length) {
    const enc = await model.encodeText(missing);
    missing.forEach((p, k) => ctx.textCache.set(`${model.entry.id}\u0000${p}`, enc[k]));
    prompts.forEach((p, i) => (out[i] ??= enc[missing.indexOf(p)]));
  }
  return out as Float32Array[];
}

interface DecodedSet {
  pooled?: Float32Array;
  logits: FloatGrid[];
  presence: number[];
  iou: number[];
  similarity: number[];
}

/** The model's features of the whole image (letterboxed), from the feature cache when it has them. */
export async function wholeImageFeatures(ctx: PipelineContext, model: SegmentationModel, image: RasterImage, sha: string, timings: Record<StageName, number>, hit: (h: boolean) => void): Promise<ImageFeatures> {
  return features(ctx, model, `${model.entry.id}:whole:${sha}`, () => letterbox(image, model.entry.input.size).pixels, timings, hit);
}

async function features(ctx: PipelineContext, model: SegmentationModel, key0: string, pixels: () => Uint8Array, timings: Record<StageName, number>, hit: (h: boolean) => void, specialist?: string): Promise<ImageFeatures> {
  await checkpoint(); // every image-encoder pass is a point where a stopped request ends
  const key = specialist ? `${key0}:specialist:${specialist}` : key0;
  const cached = ctx.featureCache.get(key);
  if (cached) {
    hit(true);
    return cached;
  }
  hit(false);
  let t = now();
  const px = pixels();
  timings.preprocess += now() - t;
  t = now();
  const f = await model.encodeImage(px, specialist);
  timings.encode_image += now() - t;
  ctx.featureCache.set(key, f);
  return f;
}

async function runWhole(ctx: PipelineContext, model: SegmentationModel, entry: ModelEntry, image: RasterImage, sha: string, e: Float32Array[], timings: Record<StageName, number>, hit: (h: boolean) => void, specialist?: string): Promise<DecodedSet> {
  const { size } = entry.input;
  // the geometry is all a cached image needs; the pixels are letterboxed only on a cache miss
  const b = letterboxGeometry(image.width, image.height, size);
  const f = await features(ctx, model, `${entry.id}:whole:${sha}`, () => letterbox(image, size).pixels, timings, hit, specialist);
  if (!e.length) return { pooled: f.pooled, logits: [], presence: [], iou: [], similarity: [] };
  let t = now();
  const out = await model.decode(f, e);
  timings.decode_mask += now() - t;
  t = now();
  const place = { left: b.left, top: b.top, scaleX: b.innerW / image.width, scaleY: b.innerH / image.height };
  const logits: FloatGrid[] = [];
  for (const g of out.maskLogits) {
    await checkpoint(); // each grid is mapped to the full image
    logits.push(mapGrid(g, size, image.width, image.height, place));
  }
  timings.postprocess += now() - t;
  return { pooled: f.pooled, logits, presence: out.presenceLogit, iou: out.iouLogit, similarity: out.similarity };
}

/** Raw presence below which extra passes (a table-given image TTA count, a specialist) are not spent on a prompt (the calibrated presence threshold sits near raw 0.5). */
const EXTRA_PASS_MIN_PRESENCE = 0.1;
/** Paraphrase templates for test-time augmentation (training templates: the model knows them). */
const TTA_TEMPLATES = ['the {s}', 'segment the {s}', '{s} segmentation', 'outline the {s}', 'where is the {s}', 'mask of the {s}', 'highlight the {s}', 'locate the {s}'];

function paraphrases(prompt: string, structure: Structure | undefined, n: number): string[] {
  if (n === 0) return [];
  const names = structure ? [structure.name, ...structure.synonyms] : [prompt];
  return TTA_TEMPLATES.slice(0, n).map((t, k) => t.replace('{s}', names[k % names.length]));
}

/** The display window a prompt's structure calls for on a CT image whose window the caller did not set. */
function windowFor(ctx: PipelineContext, image: RasterImage, structure: Structure | undefined): [number, number] | undefined {
  const d = image.dicom;
  if (!d || !d.values || d.modality !== 'CT' || d.windowSource === 'request' || !structure?.window) return undefined;
  return ctx.vocabulary.data.windows[structure.window];
}

/** Tile origins covering n pixels with tiles of `size` every `stride` (the last one flush with the end). */
export function tileOrigins(n: number, size: number, stride: number): number[] {
  if (n <= size) return [0];
  const o: number[] = [];
  for (let v = 0; v < n - size; v += stride) o.push(v);
  o.push(n - size);
  return [...new Set(o)].sort((a, b) => a - b);
}

async function runTiled(ctx: PipelineContext, model: SegmentationModel, entry: ModelEntry, image: RasterImage, sha: string, e: Float32Array[], timings: Record<StageName, number>, hit: (h: boolean) => void, specialist?: string): Promise<DecodedSet> {
  const { size, tile } = entry.input;
  let t = now();
  // native scale, at most native_max_side on the longer side, as in training, then enlarged
  // `tile.upscale` times where the manifest asks for it (a model trained on enlarged crops)
  let native = image;
  const longest = Math.max(image.width, image.height);
  const s = Math.min(1, tile.native_max_side / longest) * (tile.upscale ?? 1);
  if (s !== 1) {
    const w = roundHalfEven(image.width * s), h = roundHalfEven(image.height * s);
    native = { width: w, height: h, data: resizeRgb(image, w, h), format: image.format };
  }
  const W = Math.max(native.width, size), H = Math.max(native.height, size);
  const n = e.length;
  const acc = Array.from({ length: n }, () => new Float32Array(W * H));
  const cnt = new Float32Array(W * H);
  const pres = new Array<number>(n).fill(0), iou = new Array<number>(n).fill(0), sim = new Array<number>(n).fill(0);
  const ys = tileOrigins(H, size, tile.stride), xs = tileOrigins(W, size, tile.stride);
  timings.preprocess += now() - t;
  for (const ty of ys) {
    for (const tx of xs) {
      const makePixels = () => {
        const px = new Uint8Array(size * size * 3);
        for (let y = 0; y < size; y++) {
          const sy = ty + y;
          if (sy >= native.height) break;
          const w = Math.max(0, Math.min(size, native.width - tx));
          px.set(native.data.subarray((sy * native.width + tx) * 3, (sy * native.width + tx + w) * 3), y * size * 3);
        }
        return px;
      };
      const f = await features(ctx, model, `${entry.id}:tile:${ty}:${tx}:${sha}`, makePixels, timings, hit, specialist);
      t = now();
      const out = await model.decode(f, e);
      timings.decode_mask += now() - t;
      t = now();
      for (let k = 0; k < n; k++) {
        const g = mapGrid(out.maskLogits[k], size, size, size, { left: 0, top: 0, scaleX: 1, scaleY: 1 });
        const a = acc[k];
        for (let y = 0; y < size; y++) {
          const row = (ty + y) * W + tx;
          for (let x = 0; x < size; x++) a[row + x] += g.data[y * size + x];
        }
        pres[k] += out.presenceLogit[k];
        iou[k] += out.iouLogit[k];
        sim[k] += out.similarity[k];
      }
      for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) cnt[(ty + y) * W + tx + x] += 1;
      timings.postprocess += now() - t;
    }
  }
  t = now();
  const tiles = ys.length * xs.length;
  const logits = acc.map((a) => {
    const nat = new Float32Array(native.width * native.height);
    for (let y = 0; y < native.height; y++) for (let x = 0; x < native.width; x++) nat[y * native.width + x] = a[y * W + x] / cnt[y * W + x];
    const grid = { width: native.width, height: native.height, data: nat };
    if (native === image) return grid;
    return mapGrid(grid, native.width, image.width, image.height, { left: 0, top: 0, scaleX: native.width / image.width, scaleY: native.height / image.height });
  });
  timings.postprocess += now() - t;
  return { logits, presence: pres.map((v) => v / tiles), iou: iou.map((v) => v / tiles), similarity: sim.map((v) => v / tiles) };
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

/** [x1, y1, x2, y2] of the pixels whose logit is at least zCut (of their largest connected region with `largestComponent`), widened by `margin` of the image's longer side (at least 2 px when margin > 0); undefined when none. */
export function boxOf(g: FloatGrid, zCut: number, width: number, height: number, margin = 0.03, o: { largestComponent?: boolean } = {}): [number, number, number, number] | undefined {
  const over = new Uint8Array(g.data.length);
  for (let q = 0; q < over.length; q++) over[q] = g.data[q] >= zCut ? 1 : 0;
  if (o.largestComponent) keepLargestComponent(over, g.width, g.height);
  let x1 = Infinity, y1 = Infinity, x2 = -1, y2 = -1;
  for (let y = 0; y < g.height; y++) {
    for (let x = 0; x < g.width; x++) {
      if (!over[y * g.width + x]) continue;
      if (x < x1) x1 = x;
      if (x > x2) x2 = x;
      if (y < y1) y1 = y;
      if (y > y2) y2 = y;
    }
  }
  if (x2 < 0) return undefined;
  const m = margin > 0 ? Math.max(2, Math.round(margin * Math.max(width, height))) : 0;
  return [Math.max(0, x1 - m), Math.max(0, y1 - m), Math.min(width - 1, x2 + 1 + m), Math.min(height - 1, y2 + 1 + m)];
}

/** A text prompt's result: the model's scores through the fitted calibration, then maskResult. */
function postprocess(prompt: string, structure: Structure | undefined, mode: 'whole' | 'tiled', logits: FloatGrid, presenceLogit: number, iouLogit: number, similarity: number, image: RasterImage, threshold: number, cal: Calibration | undefined, assessment: ImageAssessment, o: { refinedIou?: number; notText: boolean; ignorePresence: boolean; largestComponentOnly: boolean }): Promise<PromptResult> {
  const presenceRaw = sigmoid(presenceLogit);
  return maskResult(prompt, mode, logits, image, threshold, {
    structure,
    inVocabulary: !!structure,
    presence: cal ? platt(presenceLogit, cal.presence) : presenceRaw,
    presenceRaw,
    // a mask redrawn by a region model carries that model's predicted IoU and its own, unscaled logits
    quality: o.refinedIou ?? (cal ? platt(iouLogit, cal.quality) : sigmoid(iouLogit)),
    temperature: o.refinedIou !== undefined || !cal ? 1 : cal.pixel_temperature,
    similarity,
    thresholds: cal ? { ...DEFAULT_THRESHOLDS, ...cal.thresholds, uncertainFraction: cal.thresholds.uncertain_fraction, oodReject: cal.thresholds.ood_reject ?? 1 } : DEFAULT_THRESHOLDS,
    ignorePresence: o.ignorePresence,
    notText: o.notText,
    largestComponentOnly: o.largestComponentOnly,
    assessment,
  });
}

export { logit, keepLargestComponent, maskResult, type MaskTrust };
