import type { FloatGrid, RasterImage } from '../../image/raster.js';
import { calibratedPresence, type Calibration, type OodStats } from '../../trust/calibration.js';
import { sigmoid } from '../../trust/scores.js';
import type { Structure } from '../../vocabulary.js';
import type { Look, ModelRun } from '../model-views.js';
import type { Refinement, SegmentRequest } from '../segment.js';
import type { Square } from '../zoom.js';

/**
 * The pipeline's passes. A request becomes one plan per prompt (plan.ts); each pass declares
 * which prompts it serves and returns logits to merge into them; the prompt's members are then
 * averaged, redrawing passes run on the merged logits, and trust and post-processing run once
 * (segment.ts). A new pass is one file here and a line in the list in plan.ts.
 */

/** One prompt of the request, as planned and as the passes have drawn it so far. */
export interface PromptPlan {
  /** The prompt's place in the request. */
  index: number;
  text: string;
  /** True when the prompt is markup or script, not a name (answered as nonsense). */
  markup: boolean;
  structure: Structure | undefined;
  mode: 'whole' | 'tiled';
  /** Paraphrases of the prompt (text-side TTA), each one more member. */
  paraphrases: string[];
  /** Text embeddings: the prompt's own, then its paraphrases'. */
  embeds: Float32Array[];
  /**
   * What the prompt's mask is averaged from: [0] the prompt's own look (its scores are the first
   * look's: redrawing passes replace its logits only), then its paraphrases', then image copies'.
   */
  members: Look[];
  /**
   * The specialist that drew the prompt's first look, whose presence and quality the response
   * carries (scaled as that network's): set by the plan for a structure whose specialist answers
   * for it altogether (`own_presence`: the first look asks it, not the model's own decoder), or by
   * the first look for a structure two networks answer for on different kinds of image (set by the
   * image: `bySet`). Unset: the model's own network.
   */
  answeredBy?: string;
  /** The specialist that drew the prompt's mask: `answeredBy`, or the one the specialist pass redrew it with. */
  specialist?: string;
  /** For a structure two networks answer for on different kinds of image: per training set labelling it, the network that answers on its images ('' the model's own). */
  bySet?: Map<string, string>;
  /** Set by the second look: the crop it looked at, and the logits it was pasted over. */
  closer?: { sq: Square; crop: RasterImage; first: FloatGrid };
  /** Set by a redrawing pass after merging (refine): the box model that redrew the mask. */
  refinedBy?: Refinement;
  /** Per-pixel variance of the members' probabilities, when there is more than one. */
  variance?: Float32Array;
}

/** What the passes of one request share. */
export interface PassState {
  run: ModelRun;
  req: SegmentRequest;
  image: RasterImage;
  imageSha256: string;
  /** The model's fitted calibration as the request uses it (none when it asks for raw scores). */
  cal: Calibration | undefined;
  prompts: PromptPlan[];
  /** The k-NN statistics of the pooled embedding that tell which training set an image lies nearest (routing prompts with `bySet`). */
  nearestSetStats?: OodStats;
  /** The whole image's pooled embedding (the first look's), for the OOD score and the routing of prompts with `bySet`. */
  embedding?: Float32Array;
  /** The image transforms that ran (image-side TTA), for the response. */
  imageTransforms: string[];
  /** Image-encoder passes served from the feature cache (hits) and run (misses). */
  featureCache: { hits: number; misses: number };
}

/** A look a pass drew for a prompt: it replaces the prompt's own look's logits, or joins its members. */
export interface Drawn {
  prompt: number;
  how: 'replace' | 'join';
  look: Look;
}

export interface Pass {
  /** What the pass is, as tests and profiles name it. */
  name: string;
  /** The prompts (their indices) this pass works on, given the plan and what earlier passes drew. */
  serves(s: PassState): number[];
  /** Runs even when it serves no prompt (the first look: it also gives the image's pooled embedding, which the OOD score reads). */
  runsWithoutPrompts?: boolean;
  /** Draws those prompts: looks to merge, in the order they join. */
  run(s: PassState, prompts: number[]): Promise<Drawn[]>;
}

/** Presence, as the response will give it (servedPresence), below which extra passes (a table-given image TTA count, a specialist) are not spent on a prompt. */
export const EXTRA_PASS_MIN_PRESENCE = 0.1;

/**
 * The presence the response will give a prompt: its first look's, scaled as the network that drew
 * it (the all-datasets network's also weighs how near the image lies to the structure's training
 * sets, without which it finds optic discs on CT slices); raw without a calibration.
 */
export function servedPresence(s: PassState, p: PromptPlan): number {
  const z = p.members[0].presence;
  return s.cal ? calibratedPresence(s.cal, p.answeredBy, z, s.embedding ?? [], p.structure?.datasets) : sigmoid(z);
}

/** Merges a pass's looks into the prompts, in order. */
export function mergeDrawn(s: PassState, drawn: Drawn[]): void {
  for (const d of drawn) {
    const m = s.prompts[d.prompt].members;
    if (d.how === 'replace') m[0] = { ...m[0], logits: d.look.logits };
    else m.push(d.look);
  }
}
