import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { AutoTokenizer, type PreTrainedTokenizer } from '@huggingface/transformers';
import type { GridSource, RasterImage } from '../image/raster.js';
import { toTensorData } from '../image/resize.js';
import { TaskNet, TaskNetMetaSchema } from './task-net.js';
import { bundleDir, LazyRunner, localTransformersId, sessionOptions } from './local-bundle.js';
import type { DecodeOutput, ImageFeatures, SegmentationModel } from './model.js';
import type { FeatureMap } from '../adapters/pixel-head.js';

/** Runs promptseg's own three-graph model (text encoder, image encoder, mask decoder). */
export class PromptsegOnnxRunner extends LazyRunner implements SegmentationModel {
  private text?: ort.InferenceSession;
  private image?: ort.InferenceSession;
  private decoder?: ort.InferenceSession;
  private tokenizer?: PreTrainedTokenizer;
  /** Specialists' sessions, loaded on first use (most requests never need one). */
  private specialists = new Map<string, Promise<{ image: ort.InferenceSession; decoder: ort.InferenceSession }>>();
  /** Task-specific specialists' nets, loaded on first use. */
  private taskNets = new Map<string, Promise<TaskNet>>();

  get loaded(): boolean {
    return !!this.decoder;
  }

  /** A session for one of the model folder's graphs, with the configured threads. */
  private session(file: string): Promise<ort.InferenceSession> {
    const so: ort.InferenceSession.SessionOptions = { ...sessionOptions(this.opts.threads), executionProviders: ['cpu'] };
    return ort.InferenceSession.create(path.join(bundleDir(this.opts.modelsDir, this.entry), file), so);
  }

  protected async doLoad(): Promise<void> {
    const dir = bundleDir(this.opts.modelsDir, this.entry);
    const [text, image, decoder] = await Promise.all([this.session('text_encoder.onnx'), this.session('image_encoder.onnx'), this.session('mask_decoder.onnx')]);
    // tokenizer.json is read from the model folder; nothing is fetched
    this.tokenizer = await AutoTokenizer.from_pretrained(localTransformersId(dir));
    this.text = text;
    this.image = image;
    this.decoder = decoder;
  }

  private async ensure(): Promise<void> {
    if (!this.loaded) await this.load();
  }

  async tokenize(prompts: string[]): Promise<{ ids: number[][] }> {
    await this.ensure();
    const enc = this.tokenizer!(prompts, { padding: true, truncation: true, max_length: 24 }) as { input_ids: { data: BigInt64Array; dims: number[] }; attention_mask: { data: BigInt64Array; dims: number[] } };
    const [n, len] = enc.input_ids.dims;
    const ids: number[][] = [];
    for (let r = 0; r < n; r++) {
      const row: number[] = [];
      for (let c = 0; c < len; c++) if (enc.attention_mask.data[r * len + c] !== 0n) row.push(Number(enc.input_ids.data[r * len + c]));
      ids.push(row);
    }
    return { ids };
  }

  async encodeText(prompts: string[]): Promise<Float32Array[]> {
    await this.ensure();
    const enc = this.tokenizer!(prompts, { padding: true, truncation: true, max_length: 24 }) as { input_ids: { data: BigInt64Array; dims: number[] }; attention_mask: { data: BigInt64Array; dims: number[] } };
    const dims = enc.input_ids.dims;
    const out = await this.text!.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(enc.input_ids.data), dims),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attention_mask.data), dims),
    });
    const t = out.text_embeds;
    const d = t.dims[1];
    const data = t.data as Float32Array;
    return prompts.map((_, i) => data.slice(i * d, (i + 1) * d));
  }

  async encodeImage(rgb: Uint8Array, specialist?: string): Promise<ImageFeatures> {
    const { size, mean = 0.5, std = 0.25 } = this.entry.input;
    return this.encodePixels(toTensorData(rgb, size, size, mean, std), specialist);
  }

  /** The sessions of a specialist named in the manifest entry, created once. */
  private specialistSessions(name: string): Promise<{ image: ort.InferenceSession; decoder: ort.InferenceSession }> {
    let s = this.specialists.get(name);
    if (!s) {
      const sp = this.entry.specialists?.find((x) => x.name === name);
      // a programmer error: the pipeline only asks for specialists the entry lists
      if (!sp) throw new Error(`model ${this.entry.id} has no specialist "${name}"`);
      if (!sp.image_encoder || !sp.mask_decoder) throw new Error(`model ${this.entry.id}: specialist "${name}" is a task-specific network, not an image encoder and mask decoder`);
      s = Promise.all([this.session(sp.image_encoder), this.session(sp.mask_decoder)]).then(([image, decoder]) => ({ image, decoder }));
      s.catch(() => this.specialists.delete(name)); // a failed load is retried by the next request
      this.specialists.set(name, s);
    }
    return s;
  }

  /** Logits of a task-net specialist's structures (its `structures` order) as the grids it drew and their place on the image; the net is opened once. */
  async taskNetLogits(name: string, image: RasterImage): Promise<GridSource[]> {
    let net = this.taskNets.get(name);
    if (!net) {
      const sp = this.entry.specialists?.find((x) => x.name === name);
      if (!sp?.task_net) throw new Error(`model ${this.entry.id} has no task-specific specialist "${name}"`);
      const { file, ...input } = sp.task_net;
      const meta = TaskNetMetaSchema.parse({ format: 'promptseg-task-net/1', dataset: typeof sp.training?.dataset === 'string' ? sp.training.dataset : name, structures: sp.structures, ...input });
      net = TaskNet.fromFile(path.join(bundleDir(this.opts.modelsDir, this.entry), file), meta, this.opts.threads);
      net.catch(() => this.taskNets.delete(name)); // a failed load is retried by the next request
      this.taskNets.set(name, net);
    }
    return (await net).logitSources(image);
  }

  /** pixels: float32 NCHW [1,3,S,S], already normalised ((v/255 - mean) / std). */
  async encodePixels(pixels: Float32Array, specialist?: string): Promise<ImageFeatures> {
    await this.ensure();
    const s = this.entry.input.size;
    const sessions = specialist ? await this.specialistSessions(specialist) : { image: this.image!, decoder: this.decoder! };
    const out = await sessions.image.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, s, s]) });
    let bytes = 0;
    const tensors: Record<string, ort.Tensor> = {};
    // the decoder's own inputs name the image features it needs (f0..f5 and embed_map for the
    // current model; bundles exported before the full-resolution head have no f0)
    for (const k of sessions.decoder.inputNames.filter((n) => n !== 'text_embeds')) {
      if (!out[k]) throw new Error(`model ${this.entry.id}: the image encoder has no output '${k}' that the mask decoder needs`);
      tensors[k] = out[k];
      bytes += (out[k].data as Float32Array).byteLength;
    }
    return { bytes, pooled: out.pooled.data as Float32Array, tensors, ...(specialist ? { specialist } : {}) };
  }

  async decode(features: ImageFeatures, textEmbeds: Float32Array[]): Promise<DecodeOutput> {
    await this.ensure();
    const n = textEmbeds.length;
    const d = textEmbeds[0].length;
    const e = new Float32Array(n * d);
    textEmbeds.forEach((t, i) => e.set(t, i * d));
    const feeds: Record<string, ort.Tensor> = { ...(features.tensors as Record<string, ort.Tensor>), text_embeds: new ort.Tensor('float32', e, [n, d]) };
    const decoder = features.specialist ? (await this.specialistSessions(features.specialist)).decoder : this.decoder!;
    const out = await decoder.run(feeds);
    const m = out.mask_logits;
    const [, , h, w] = m.dims;
    const md = m.data as Float32Array;
    return {
      maskLogits: Array.from({ length: n }, (_, i) => ({ width: w, height: h, data: md.slice(i * h * w, (i + 1) * h * w) })),
      presenceLogit: Array.from(out.presence_logit.data as Float32Array),
      iouLogit: Array.from(out.iou_logit.data as Float32Array),
      similarity: Array.from(out.similarity.data as Float32Array),
    };
  }

  /** The spatial maps among the features the mask decoder reads (f0..f5, embed_map), finest first. */
  featureMaps(features: ImageFeatures): FeatureMap[] {
    const tensors = features.tensors as Record<string, ort.Tensor>;
    return Object.entries(tensors)
      .filter(([, t]) => t.dims.length === 4)
      .map(([name, t]) => ({ name, channels: t.dims[1], height: t.dims[2], width: t.dims[3], data: t.data as Float32Array }))
      .sort((a, b) => b.height - a.height || a.name.localeCompare(b.name));
  }

  async dispose(): Promise<void> {
    const specialists = await Promise.allSettled([...this.specialists.values()]);
    this.specialists.clear();
    const taskNets = await Promise.allSettled([...this.taskNets.values()]);
    this.taskNets.clear();
    await Promise.all(taskNets.map((r) => (r.status === 'fulfilled' ? r.value.dispose() : undefined)));
    await Promise.all([this.text?.release(), this.image?.release(), this.decoder?.release(), ...specialists.flatMap((r) => (r.status === 'fulfilled' ? [r.value.image.release(), r.value.decoder.release()] : []))]);
    this.text = this.image = this.decoder = undefined;
    this.unload();
  }
}
