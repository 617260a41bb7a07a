import { AutoProcessor, RawImage, SamModel, Tensor, type Processor } from '@huggingface/transformers';
import { fail } from '../errors.js';
import { Lru } from '../pipeline/lru.js';
import type { RegionMask, RegionMaskModel, RegionPrompt } from './model.js';
import { bundleDir, localTransformersId, sessionOptions, LazyRunner } from './local-bundle.js';

interface Embedded {
  emb: { image_embeddings: Tensor; image_positional_embeddings: Tensor };
  original: [number, number][];
  reshaped: [number, number][];
}

/**
 * SAM-family box/point-prompted mask decoders (SAM, SlimSAM, MedSAM exports in the transformers.js
 * layout: onnx/vision_encoder.onnx + onnx/prompt_encoder_mask_decoder.onnx) through
 * @huggingface/transformers' SamModel and SamProcessor. The image embedding is computed once per
 * image and kept (a few images) so further boxes or points cost only the decoder. Boxes go to
 * the decoder's `input_boxes` input when the export has one; otherwise as SAM's box-corner points
 * (labels 2 and 3). Of SAM's three candidate masks the one with the highest predicted IoU is kept.
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

  private decoderInputs(): string[] {
    const s = (this.model as unknown as { sessions: Record<string, { inputNames: string[] }> }).sessions.prompt_encoder_mask_decoder;
    return s.inputNames;
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
    const takesBoxes = this.decoderInputs().includes('input_boxes');
    const out: RegionMask[] = [];
    for (const pr of prompts) {
      const pts: number[] = [], labels: bigint[] = [];
      for (const [x, y, l] of pr.points ?? []) {
        pts.push(x * sx, y * sy);
        labels.push(BigInt(l));
      }
      const feeds: Record<string, Tensor> = { ...e.emb };
      if (pr.box) {
        const [x1, y1, x2, y2] = pr.box;
        if (takesBoxes) feeds.input_boxes = new Tensor('float32', Float32Array.from([x1 * sx, y1 * sy, x2 * sx, y2 * sy]), [1, 1, 4]);
        else {
          pts.push(x1 * sx, y1 * sy, x2 * sx, y2 * sy);
          labels.push(2n, 3n);
        }
      }
      if (!labels.length) {
        if (!pr.box) fail('invalid_argument', 'a region prompt needs a box or at least one point', 'regions');
        pts.push(0, 0); // a padding point, ignored by SAM's prompt encoder
        labels.push(-10n);
      }
      feeds.input_points = new Tensor('float32', Float32Array.from(pts), [1, 1, labels.length, 2]);
      feeds.input_labels = new Tensor('int64', BigInt64Array.from(labels), [1, 1, labels.length]);
      const res = (await this.model!(feeds)) as { iou_scores: Tensor; pred_masks: Tensor };
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
