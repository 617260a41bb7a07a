import { fail } from '../errors.js';
import type { RegionPrompt } from './model.js';

/** What a SAM-family decoder graph declares, read from its ONNX session. */
export interface SamDecoderInputs {
  names: string[];
  /** The input_boxes dimension that counts boxes: a number when fixed, a name when dynamic. */
  boxCount?: number | string;
}

/** How prompts reach one decoder graph: a pure reading of its declared inputs. */
export interface SamPromptEncoding {
  takesPoints: boolean;
  takesBoxes: boolean;
  /** Whether a prompt without a box can be fed to a graph that declares input_boxes (zero boxes). */
  boxOptional: boolean;
}

export function samPromptEncoding(inputs: SamDecoderInputs): SamPromptEncoding {
  const takesBoxes = inputs.names.includes('input_boxes');
  return {
    takesPoints: inputs.names.includes('input_points'),
    takesBoxes,
    boxOptional: takesBoxes && typeof inputs.boxCount !== 'number',
  };
}

/** A feed for the decoder: flat arrays and shapes, converted to tensors by the runner. */
export interface SamPromptFeed {
  input_points?: { data: Float32Array; dims: number[] };
  input_labels?: { data: BigInt64Array; dims: number[] };
  input_boxes?: { data: Float32Array; dims: number[] };
}

/**
 * Encodes one box/point prompt for a decoder as its graph declares it, in the processor's resized
 * coordinates (scale sx, sy). SAM's prompt encoder gives a point-type embedding only to labels 1
 * (on the structure) and 0 (background); a box reaches its corner embeddings only through
 * `input_boxes`. So a box goes to `input_boxes` or is refused, never as corner-labelled points that
 * a graph traced without boxes reads as untyped points. Every input the graph declares is fed: a
 * box-only prompt on a graph that also takes points gets one padding point (label -10, which the
 * prompt encoder turns into a zero token), and a point prompt on a graph with a dynamic box count
 * gets zero boxes.
 */
export function encodeSamPrompt(modelId: string, inputs: SamDecoderInputs, pr: RegionPrompt, sx: number, sy: number, at = 'regions'): SamPromptFeed {
  const enc = samPromptEncoding(inputs);
  const declared = `its decoder's inputs are ${inputs.names.join(', ')}`;
  const feed: SamPromptFeed = {};
  if (pr.box) {
    if (!enc.takesBoxes)
      fail('invalid_argument', `model ${modelId} cannot take a box: ${declared} (no input_boxes). Prompt it with points, or install an export whose decoder declares input_boxes (for Xenova/slimsam-77-uniform, the points-and-boxes revision)`, `${at}.box`);
    const [x1, y1, x2, y2] = pr.box;
    feed.input_boxes = { data: Float32Array.from([x1 * sx, y1 * sy, x2 * sx, y2 * sy]), dims: [1, 1, 4] };
  } else if (enc.takesBoxes && !enc.boxOptional) {
    fail('invalid_argument', `model ${modelId} needs a box with every prompt: ${declared}, with a fixed box count`, `${at}.box`);
  } else if (enc.takesBoxes) {
    feed.input_boxes = { data: new Float32Array(0), dims: [1, 0, 4] };
  }
  const points = pr.points ?? [];
  if (points.length && !enc.takesPoints) fail('invalid_argument', `model ${modelId} cannot take points: ${declared} (no input_points). Prompt it with a box`, `${at}.points`);
  if (enc.takesPoints) {
    const xy: number[] = [], labels: bigint[] = [];
    for (const [x, y, l] of points) {
      xy.push(x * sx, y * sy);
      labels.push(BigInt(l));
    }
    if (!labels.length) {
      xy.push(0, 0);
      labels.push(-10n);
    }
    feed.input_points = { data: Float32Array.from(xy), dims: [1, 1, labels.length, 2] };
    feed.input_labels = { data: BigInt64Array.from(labels), dims: [1, 1, labels.length] };
  }
  return feed;
}
