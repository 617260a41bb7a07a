import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { AutoProcessor, AutoTokenizer, RawImage, type PreTrainedTokenizer, type Processor, type Tensor } from '@huggingface/transformers';
import { z } from 'zod';
import type { DecodeOutput, ImageFeatures, SegmentationModel } from './model.js';
import { bundleDir, localTransformersId, sessionOptions, LazyRunner } from './local-bundle.js';

/** The template of BiomedCLIP's own zero-shot examples. */
export const BIOMEDCLIP_TEMPLATE = 'this is a photo of {}';

/** config.json that models/convert/biomedclip_to_onnx.py writes next to the two towers. */
const BundleConfigSchema = z.object({
  image_size: z.number().int().positive(),
  patch_size: z.number().int().positive(),
  grid: z.number().int().positive(),
  logit_scale: z.number().positive(),
  context_length: z.number().int().positive(),
  /** How a prompt is put into words before the text tower; `{}` is the prompt. BiomedCLIP's own zero-shot examples use this template. */
  prompt_template: z.string().includes('{}').default(BIOMEDCLIP_TEMPLATE),
});

/**
 * BiomedCLIP's text and image towers (converted to ONNX by models/convert/biomedclip_to_onnx.py)
 * for the MedCLIP-SAM pattern: the cosine similarity of the prompt embedding with every patch
 * token is a coarse map; its strongest region becomes the mask logits here, and the pipeline
 * hands the box of that region's largest connected part to the SAM-family model named by
 * `refine_with`. Prompts reach the text tower through BiomedCLIP's template ("this is a photo of
 * {}", `prompt_template` in config.json). Presence is the scaled
 * image-text cosine (CLIP's zero-shot score), which `promptseg calibrate` can map to a probability.
 */
export class BiomedclipRunner extends LazyRunner implements SegmentationModel {
  private text?: ort.InferenceSession;
  private image?: ort.InferenceSession;
  private tokenizer?: PreTrainedTokenizer;
  private processor?: Processor;
  private config?: z.infer<typeof BundleConfigSchema>;

  get loaded(): boolean {
    return !!this.image;
  }

  protected async doLoad(): Promise<void> {
    const dir = bundleDir(this.opts.modelsDir, this.entry);
    const parsed = BundleConfigSchema.safeParse(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')));
    if (!parsed.success) throw new Error(`invalid ${this.entry.id}/config.json: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    this.config = parsed.data;
    const so = { ...sessionOptions(this.opts.threads), executionProviders: ['cpu'] };
    const [text, image] = await Promise.all([
      ort.InferenceSession.create(path.join(dir, 'text_encoder.onnx'), so),
      ort.InferenceSession.create(path.join(dir, 'image_encoder.onnx'), so),
    ]);
    const id = localTransformersId(dir);
    this.tokenizer = await AutoTokenizer.from_pretrained(id);
    this.processor = await AutoProcessor.from_pretrained(id, {});
    this.text = text;
    this.image = image;
  }

  async tokenize(prompts: string[]): Promise<{ ids: number[][] }> {
    await this.load();
    return {
      ids: prompts.map((p) => Array.from((this.tokenizer!(p, { truncation: true, max_length: this.config!.context_length }) as { input_ids: Tensor }).input_ids.data as BigInt64Array, Number)),
    };
  }

  async encodeText(prompts: string[]): Promise<Float32Array[]> {
    await this.load();
    const worded = prompts.map((p) => this.config!.prompt_template.replace('{}', p));
    const enc = this.tokenizer!(worded, { padding: true, truncation: true, max_length: this.config!.context_length }) as { input_ids: Tensor; attention_mask: Tensor };
    const out = await this.text!.run({
      input_ids: new ort.Tensor('int64', enc.input_ids.data as BigInt64Array, enc.input_ids.dims),
      attention_mask: new ort.Tensor('int64', enc.attention_mask.data as BigInt64Array, enc.attention_mask.dims),
    });
    const t = out.text_embeds;
    const d = t.dims[1];
    const data = t.data as Float32Array;
    return prompts.map((_, i) => unit(data.slice(i * d, (i + 1) * d)));
  }

  async encodeImage(rgb: Uint8Array): Promise<ImageFeatures> {
    await this.load();
    const s = this.entry.input.size;
    const { pixel_values } = (await this.processor!(new RawImage(new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.byteLength), s, s, 3))) as { pixel_values: Tensor };
    const out = await this.image!.run({ pixel_values: new ort.Tensor('float32', pixel_values.data as Float32Array, pixel_values.dims) });
    const patches = out.patch_embeds.data as Float32Array;
    return { bytes: patches.byteLength, pooled: unit(Float32Array.from(out.image_embeds.data as Float32Array)), tensors: { patches, dim: out.patch_embeds.dims[2] } };
  }

  async decode(features: ImageFeatures, textEmbeds: Float32Array[]): Promise<DecodeOutput> {
    await this.load();
    const { grid, logit_scale } = this.config!;
    const { patches, dim } = features.tensors as { patches: Float32Array; dim: number };
    const out: DecodeOutput = { maskLogits: [], presenceLogit: [], iouLogit: [], similarity: [] };
    for (const t of textEmbeds) {
      const sim = new Float32Array(grid * grid);
      for (let p = 0; p < grid * grid; p++) {
        let dot = 0, nn = 0;
        for (let c = 0; c < dim; c++) {
          const v = patches[p * dim + c];
          dot += v * t[c];
          nn += v * v;
        }
        sim[p] = dot / Math.sqrt(nn || 1);
      }
      let lo = Infinity, hi = -Infinity;
      for (const v of sim) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      // the strongest 40% of the similarity range is the region; its box is what SAM refines
      const span = hi - lo || 1;
      out.maskLogits.push({ width: grid, height: grid, data: sim.map((v) => (8 * (v - (lo + 0.6 * span))) / span) });
      const cos = dot(features.pooled, t);
      out.presenceLogit.push(logit_scale * (cos - 0.25));
      out.iouLogit.push(0);
      out.similarity.push(cos);
    }
    return out;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.text?.release(), this.image?.release()]);
    this.text = this.image = undefined;
    this.unload();
  }
}

function unit(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n) || 1;
  return v.map((x) => x / n);
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i], 0);
