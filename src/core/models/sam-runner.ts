import * as ort from 'onnxruntime-node';
import { AutoProcessor, RawImage, SamModel, Tensor, type Processor } from '@huggingface/transformers';
import { Lru } from '../pipeline/lru.js';
import type { RegionMask, RegionMaskModel, RegionPrompt } from './model.js';
import { bundleDir, localTransformersId, sessionOptions, LazyRunner } from './local-bundle.js';
import { encodeSamPrompt, type SamDecoderInputs } from './sam-prompt-encoding.js';

interface DecoderSession {
  inputNames: readonly string[];
  inputMetadata?: readonly { name: string; isTensor: boolean; shape?: readonly (number | string)[] }[];
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
}

/** The onnxruntime tensor inside a transformers.js Tensor. */
const ortOf = (t: Tensor): ort.Tensor => (t as unknown as { ort_tensor: ort.Tensor }).ort_tensor;

interface Embedded {
  emb: { image_embeddings: Tensor; image_positional_embeddings: Tensor };
  original: [number, number][];
  reshaped: [number, number][];
}

/**
 * SAM-family box/point-prompted mask decoders (SAM, SlimSAM, MedSAM exports in the transformers.js
 * layout: onnx/vision_encoder.onnx + onnx/prompt_encoder_mask_decoder.onnx) through
 * @huggingface/transformers' SamModel and SamProcessor. The image embedding is computed once per
 * image and kept (a few images) so further boxes or points cost only the decoder. How a prompt is
 * fed follows the inputs the decoder graph declares (sam-prompt-encoding.ts): boxes only through
 * `input_boxes`, refused with a clear error by a points-only export. Of SAM's three candidate masks
 * the one with the highest predicted IoU is kept.
 */
export class SamRunner extends LazyRunner implements RegionMaskModel {
  private model?: SamModel;
  private processor?: Processor;
  private readonly embeddings = new Lru<string, Embedded>(4);

  get loaded(): boolean {
    return !!this.model;
  }

  protected async doLoad(): Promise<void> {
    const id = localTransformersId(bundleDir(this.opts.modelsDir, this.entry));
    this.processor = await AutoProcessor.from_pretrained(id, {});
    this.model = (await SamModel.from_pretrained(id, {
      dtype: this.entry.dtype ?? 'fp32',
      local_files_only: true,
      device: 'cpu',
      session_options: sessionOptions(this.opts.threads),
    })) as SamModel;
  }

  private decoderSession(): DecoderSession {
    return (this.model as unknown as { sessions: Record<string, DecoderSession> }).sessions.prompt_encoder_mask_decoder;
  }

  /** The decoder graph's declared inputs (names, and whether its box count is fixed). */
  decoderInputs(): SamDecoderInputs {
    const session = this.decoderSession();
    const boxes = session.inputMetadata?.find((m) => m.name === 'input_boxes');
    const boxCount = boxes?.isTensor && boxes.shape && boxes.shape.length >= 2 ? boxes.shape[1] : undefined;
    return { names: [...session.inputNames], ...(boxCount !== undefined ? { boxCount } : {}) };
  }

  private async embed(image: { width: number; height: number; data: Uint8Array }, key: string): Promise<Embedded> {
    const hit = this.embeddings.get(key);
    if (hit) return hit;
    const raw = new RawImage(new Uint8ClampedArray(image.data.buffer, image.data.byteOffset, image.data.byteLength), image.width, image.height, 3);
    const p = (await this.processor!(raw)) as { pixel_values: Tensor; original_sizes: [number, number][]; reshaped_input_sizes: [number, number][] };
    const emb = (await this.model!.get_image_embeddings({ pixel_values: p.pixel_values })) as Embedded['emb'];
    const e = { emb, original: p.original_sizes, reshaped: p.reshaped_input_sizes };
    this.embeddings.set(key, e);
    return e;
  }

  async segmentRegions(image: { width: number; height: number; data: Uint8Array }, imageKey: string, prompts: RegionPrompt[]): Promise<RegionMask[]> {
    await this.load();
    const e = await this.embed(image, imageKey);
    const [oh, ow] = e.original[0];
    const [rh, rw] = e.reshaped[0];
    const sx = rw / ow, sy = rh / oh;
    const inputs = this.decoderInputs();
    const out: RegionMask[] = [];
    for (const [i, pr] of prompts.entries()) {
      const prompt = encodeSamPrompt(this.entry.id, inputs, pr, sx, sy, `regions[${i}]`);
      // the decoder session runs directly: SamModel.forward assumes input_points, which a boxes-only export lacks
      const feeds: Record<string, ort.Tensor> = {
        image_embeddings: ortOf(e.emb.image_embeddings),
        image_positional_embeddings: ortOf(e.emb.image_positional_embeddings),
      };
      if (prompt.input_points) feeds.input_points = new ort.Tensor('float32', prompt.input_points.data, prompt.input_points.dims);
      if (prompt.input_labels) feeds.input_labels = new ort.Tensor('int64', prompt.input_labels.data, prompt.input_labels.dims);
      if (prompt.input_boxes) feeds.input_boxes = new ort.Tensor('float32', prompt.input_boxes.data, prompt.input_boxes.dims);
      const raw = await this.decoderSession().run(feeds);
      const res = { iou_scores: raw.iou_scores, pred_masks: new Tensor('float32', raw.pred_masks.data as Float32Array, [...raw.pred_masks.dims]) };
      const ious = Array.from(res.iou_scores.data as Float32Array);
      const best = ious.indexOf(Math.max(...ious));
      const masks = (await (this.processor as unknown as { post_process_masks: (m: Tensor, o: unknown, r: unknown, opt: object) => Promise<Tensor[]> }).post_process_masks(
        res.pred_masks, e.original, e.reshaped, { binarize: false },
      ))[0];
      const hw = oh * ow;
      const data = (masks.data as Float32Array).slice(best * hw, (best + 1) * hw);
      out.push({ logits: { width: ow, height: oh, data }, iou: ious[best], candidate: best });
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.model?.dispose();
    this.model = undefined;
    this.unload();
  }
}
