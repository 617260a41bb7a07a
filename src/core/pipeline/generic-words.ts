import type { RasterImage } from '../image/raster.js';
import type { Structure, Vocabulary } from '../vocabulary.js';
import { DEFAULT_THRESHOLDS } from '../trust/verdict.js';
import { maskResult } from './mask-result.js';
import type { ImageAssessment, PromptResult } from './segment.js';

/** How a generic word (lesion, tumour, mass...) was read on this image. */
export interface GenericResolution {
  word: string;
  /** The structure it was read as; null when none. */
  structure: string | null;
  /** generic_word_resolved: read as a structure; generic_word_unresolved: not read. */
  code: 'generic_word_resolved' | 'generic_word_unresolved';
  /** What decided: the model finding one of the candidate findings present, or the image's nearest training set. */
  basis: 'model_presence' | 'nearest_training_set' | null;
  /** The training set the image looks most like (the model's out-of-distribution statistics). */
  nearest_training_set: string | null;
  /** The model's presence for each finding the word can mean, on this image. */
  candidates: Record<string, number>;
  message: string;
}

/** Presence at or above which the model is taken to find a candidate finding (the verdict's own presence threshold). */
const FOUND = 0.5;

/**
 * Reads a generic word by what the image is, as the model sees it: of the findings the word can
 * mean (one per training set that has one: vocabulary generic_words), the one the model finds
 * present; where it finds several (a glioma slice shows the FLAIR abnormality, the whole tumour and
 * its core), the finding of the image's nearest training set if it is among them, else the one
 * with the highest presence; if it finds none, the finding of the image's nearest training
 * set (k-NN on the pooled embedding and appearance, calibration.json), which will then mostly be
 * answered as absent; if that set has none either, nothing (the word is not read, and the answer
 * says why).
 */
export function readGenericWord(vocabulary: Vocabulary, word: string, image: Pick<ImageAssessment, 'nearestTrainingSet' | 'outOfDistribution'>, presence: Record<string, number>): { structure?: Structure; resolution: GenericResolution } {
  const nearest = image.nearestTrainingSet;
  const kind = nearest ? (vocabulary.data.datasets.find((d) => d.id === nearest)?.modality_words[0] ?? nearest) : undefined;
  const base = { word, nearest_training_set: nearest, candidates: presence };
  const unusual = image.outOfDistribution ? ' The image is less typical of its kind than the images the model was validated on.' : '';
  const own = vocabulary.genericMeaning(nearest, word)?.slug;
  const found = Object.entries(presence).filter(([, p]) => p >= FOUND).sort((a, b) => b[1] - a[1]);
  const best = found.find(([slug]) => slug === own) ?? found[0];
  if (best) {
    const s = vocabulary.bySlug.get(best[0])!;
    const others = found.length > 1 ? ` (${found.length} of them are found; ${best[0] === own ? 'this one is the finding of the kind of image this looks most like' : 'this one with the highest presence'})` : '';
    const where = kind ? `; the image looks most like a ${kind} (nearest training set ${nearest})` : '';
    return { structure: s, resolution: { ...base, structure: s.slug, code: 'generic_word_resolved', basis: 'model_presence', message: `"${word}" read as ${s.name}: of the findings it can mean, the model finds that one here (presence ${(100 * best[1]).toFixed(0)}%)${others}${where}.${unusual} Name another structure to override.` } };
  }
  const s = vocabulary.genericMeaning(nearest, word);
  if (s) return { structure: s, resolution: { ...base, structure: s.slug, code: 'generic_word_resolved', basis: 'nearest_training_set', message: `"${word}" read as ${s.name}, the finding of the kind of image this looks most like (a ${kind}, nearest training set ${nearest}); the model finds none of the findings it can mean here.${unusual} Name another structure to override.` } };
  const why = kind ? `The image looks most like a ${kind} (nearest training set ${nearest}), on which the model knows no finding a "${word}" could mean, and it finds none of the others here` : `The model finds none of the findings "${word}" can mean here, and has no statistics to tell what kind of image this is`;
  return { resolution: { ...base, structure: null, code: 'generic_word_unresolved', basis: null, message: `${why}: name the structure (list_structures).` } };
}

/** The answer to a generic word that was not read: an empty mask, rejected with the reason. */
export function unreadResult(prompt: string, image: RasterImage, r: GenericResolution): Promise<PromptResult> {
  const zeros = { width: image.width, height: image.height, data: new Float32Array(image.width * image.height).fill(-20) };
  return maskResult(prompt, 'whole', zeros, image, 0.5, {
    structure: undefined,
    structureName: r.word,
    inVocabulary: false,
    presence: 0,
    presenceRaw: 0,
    quality: 0,
    similarity: 0,
    temperature: 1,
    thresholds: DEFAULT_THRESHOLDS,
    ignorePresence: false,
    genericUnresolved: r.message,
    assessment: { outOfDistribution: false, oodScore: null },
  });
}
