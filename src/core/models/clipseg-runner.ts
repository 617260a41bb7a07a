import { AutoProcessor, AutoTokenizer, CLIPSegForImageSegmentation, RawImage, Tensor, type PreTrainedModel, type PreTrainedTokenizer, type Processor } from '@huggingface/transformers';
import type { DecodeOutput, ImageFeatures, SegmentationModel } from './model.js';
import { bundleDir, localTransformersId, sessionOptions, LazyRunner } from './local-bundle.js';

/**
 * CLIPSeg (CLIP text and image towers + a light decoder, one ONNX graph) through
 * @huggingface/transformers: its tokenizer, image processor and CLIPSegForImageSegmentation.
 * All prompts of a request run in one call on one image. CLIPSeg has no presence output: the
 * runner derives one from the logit distribution (mean of the top 0.5% of pixel logits), which
 * `promptseg calibrate` can map to a probability like the built-in model's.
 */
export class ClipsegRunner extends LazyRunner implements SegmentationModel {
  private model?: PreTrainedModel;
  private tokenizer?: PreTrainedTokenizer;
  private processor?: Processor;

  get loaded(): boolean {
    return !!this.model;
  }

  protected async doLoad(): Promise<void> {
    const id = localTransformersId(bundleDir(this.opts.modelsDir, this.entry));
    this.tokenizer = await AutoTokenizer.from_pretrained(id);
    this.processor = await AutoProcessor.from_pretrained(id, {});
    this.model = await CLIPSegForImageSegmentation.from_pretrained(id, {
      dtype: this.entry.dtype ?? 'fp32',
      local_files_only: true,
      device: 'cpu',
      session_options: sessionOptions(this.opts.threads),
    });
  }

  async tokenize(prompts: string[]): Promise<{ ids: number[][] }> {
    await this.load();
    return { ids: prompts.map((p) => Array.from((this.tokenizer!(p, { truncation: true }) as { input_ids: Tensor }).input_ids.data as BigInt64Array, Number)) };
  }

  /** The token ids of each prompt (the graph fuses text and image, so there is no separate embedding). */
  async encodeText(prompts: string[]): Promise<Float32Array[]> {
    const { ids } = await this.tokenize(prompts);
    return ids.map((r) => Float32Array.from(r));
  }

  async encodeImage(rgb: Uint8Array): Promise<ImageFeatures> {
    await this.load();
    const s = this.entry.input.size;
    const { pixel_values } = (await this.processor!(new RawImage(new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.byteLength), s, s, 3))) as { pixel_values: Tensor };
    return { bytes: (pixel_values.data as Float32Array).byteLength, pooled: new Float32Array(0), tensors: pixel_values };
  }

  async decode(features: ImageFeatures, tokenIds: Float32Array[]): Promise<DecodeOutput> {
    await this.load();
    const n = tokenIds.length;
    const len = Math.max(...tokenIds.map((t) => t.length));
    const pad = BigInt(this.tokenizer!.pad_token_id ?? 0);
    const ids = new BigInt64Array(n * len).fill(pad);
    const mask = new BigInt64Array(n * len);
    tokenIds.forEach((t, r) => t.forEach((v, c) => {
      ids[r * len + c] = BigInt(v);
      mask[r * len + c] = 1n;
    }));
    const out = (await this.model!({
      input_ids: new Tensor('int64', ids, [n, len]),
      attention_mask: new Tensor('int64', mask, [n, len]),
      pixel_values: features.tensors as Tensor,
    })) as { logits: Tensor };
    const dims = out.logits.dims;
    const h = dims[dims.length - 2], w = dims[dims.length - 1];
    const data = out.logits.data as Float32Array;
    const maskLogits = Array.from({ length: n }, (_, i) => ({ width: w, height: h, data: data.slice(i * h * w, (i + 1) * h * w) }));
    return {
      maskLogits,
      presenceLogit: maskLogits.map((g) => topMean(g.data, 0.005)),
      iouLogit: maskLogits.map((g) => insideConfidenceLogit(g.data)),
      similarity: maskLogits.map((g) => 1 / (1 + Math.exp(-topMean(g.data, 0.005)))),
    };
  }

  async dispose(): Promise<void> {
    await this.model?.dispose();
    this.model = undefined;
    this.unload();
  }
}

/** Mean of the largest `fraction` of the values (at least one). */
export function topMean(v: Float32Array, fraction: number): number {
  const k = Math.max(1, Math.round(v.length * fraction));
  const sorted = Float32Array.from(v).sort();
  let s = 0;
  for (let i = sorted.length - k; i < sorted.length; i++) s += sorted[i];
  return s / k;
}

/** Logit of the mean pixel probability inside the mask (logit > 0); a stand-in for predicted IoU. */
export function insideConfidenceLogit(v: Float32Array): number {
  let s = 0, n = 0;
  for (const z of v) if (z > 0) {
    s += 1 / (1 + Math.exp(-z));
    n++;
  }
  if (!n) return -4;
  const p = Math.min(Math.max(s / n, 1e-4), 1 - 1e-4);
  return Math.log(p / (1 - p));
}
