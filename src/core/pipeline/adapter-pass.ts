import { fail } from '../errors.js';
import type { RasterImage } from '../image/raster.js';
import { adapterLogits, logitCut, supportDistance, type Embedder } from '../adapters/adapt.js';
import type { LoadedAdapter } from '../adapters/adapter-set.js';
import type { ImageFeatures, SegmentationModel } from '../models/model.js';
import { DEFAULT_THRESHOLDS, type Reason } from '../trust/verdict.js';
import { sigmoid } from '../trust/scores.js';
import { maskResult } from './mask-result.js';
import type { PromptResult } from './segment.js';

export interface AdapterPrompt {
  prompt: string;
  adapter: LoadedAdapter;
}

/**
 * The masks of prompts that name adapters: each adapter's head on the model's features of the
 * whole image (the same cached features the model's own prompts use), read through the
 * adapter's calibration, then the same mask, statistics and verdict as a built-in structure.
 */
export async function adapterPass(model: SegmentationModel, features: ImageFeatures, image: RasterImage, prompts: AdapterPrompt[], o: { threshold?: number; largestComponent?: boolean | 'auto'; embed?: Embedder }): Promise<PromptResult[]> {
  if (!model.featureMaps) fail('invalid_argument', `model ${model.entry.id} does not serve adapters`, 'model');
  const maps = model.featureMaps!(features);
  const out: PromptResult[] = [];
  for (const { prompt, adapter } of prompts) {
    const c = adapter.file.calibration;
    const raw = await adapterLogits(model, adapter.heads, maps, image.width, image.height);
    // maskResult reads probability = sigmoid(logit / temperature): the bias is taken off first
    const shifted = new Float32Array(raw.data.length);
    let max = -Infinity;
    for (let q = 0; q < shifted.length; q++) {
      shifted[q] = raw.data[q] - c.bias;
      if (raw.data[q] > max) max = raw.data[q];
    }
    const threshold = o.threshold ?? c.mask_threshold;
    // the adapter's own estimate of its mask's quality: the Dice its calibrated probabilities expect
    // between the mask and the truth, 2 sum(p over the mask) / (sum p + mask area)
    const cut = logitCut(c, threshold);
    let inside = 0, all = 0, n = 0;
    for (let q = 0; q < raw.data.length; q++) {
      const p = sigmoid(shifted[q] / c.temperature);
      all += p;
      if (raw.data[q] >= cut) {
        inside += p;
        n++;
      }
    }
    const presence = sigmoid(c.presence.a * max + c.presence.b);
    const r = await maskResult(prompt, 'whole', { width: raw.width, height: raw.height, data: shifted }, image, threshold, {
      structure: adapter.structure,
      inVocabulary: true,
      presence,
      presenceRaw: presence,
      quality: n ? (2 * inside) / (all + n) : 0,
      similarity: 0,
      temperature: c.temperature,
      thresholds: { ...DEFAULT_THRESHOLDS, oodReject: 1.5 },
      ignorePresence: false,
      uncalibrated: c.fitted_on === 'none' ? `The adapter ${adapter.file.id} (${adapter.file.made.k} labelled image${adapter.file.made.k === 1 ? '' : 's'})` : undefined,
      largestComponentOnly: o.largestComponent === true || ((o.largestComponent ?? 'auto') === 'auto' && c.largest_component),
      // the model's out-of-distribution statistics describe the images it was trained on; an
      // adapter is judged by its own support images instead (a kidney adapter asked of a chest
      // X-ray is refused, a structure taught on a new kind of image is not flagged for being new)
      assessment: familiarity(adapter, features.pooled, o.embed),
    });
    r.reasons = r.reasons.map((x) => (x.code === 'out_of_distribution' ? unfamiliar(adapter, x) : x.code === 'low_predicted_quality' ? { ...x, message: `The adapter's own probabilities expect a Dice of only ${r.predictedQuality.toFixed(2)} between this mask and the true outline.` } : x));
    r.adapter = adapter.file.id;
    out.push(r);
  }
  return out;
}

/** The image against the adapter's support images: a ratio to the familiarity threshold (> 1 = unlike them all; rejected past 1.5). */
function familiarity(a: LoadedAdapter, pooled: Float32Array, embed?: Embedder): { outOfDistribution: boolean; oodScore: number | null } {
  const th = a.file.familiarity.threshold;
  if (th === null || !a.support.length) return { outOfDistribution: false, oodScore: null };
  const ratio = supportDistance(a.support, pooled, embed) / th;
  return { outOfDistribution: ratio > 1, oodScore: ratio };
}

function unfamiliar(a: LoadedAdapter, r: Reason): Reason {
  const what = `the ${a.file.made.k} image${a.file.made.k === 1 ? '' : 's'} adapter ${a.file.id} was taught on`;
  return { ...r, message: r.severity === 'reject' ? `The image looks unlike ${what}, so its mask means little here.` : `The image is less like ${what} than its validation images were; check the result.` };
}
