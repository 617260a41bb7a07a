import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { deferredGrid } from '../image/grid-sampler.js';
import { letterbox, letterboxGeometry, resizeRgb, roundHalfEven } from '../image/resize.js';
import type { FloatGrid, GridSource, RasterImage } from '../image/raster.js';
import { tileOrigins } from '../pipeline/model-views.js';
import { sessionOptions } from './local-bundle.js';
import { TaskNetInputSchema } from './manifest.js';

/**
 * A task-specific network: one dataset's structures, no text, trained on that dataset alone
 * (models/train/task_baselines.py). What the generalist is measured against, dataset by dataset.
 * Its folder holds model.onnx (input `pixels` [1,3,S,S], raw 0..255 RGB of the letterboxed image
 * or of one native-scale tile; output `logits` [1,K,S,S]) and meta.json.
 */
export const TaskNetMetaSchema = TaskNetInputSchema.extend({
  format: z.literal('promptseg-task-net/1'),
  dataset: z.string(),
  structures: z.array(z.string()).min(1),
  arch: z.record(z.string(), z.unknown()).default({}),
  train: z.record(z.string(), z.unknown()).default({}),
  val_dice: z.record(z.string(), z.number()).default({}),
  checkpoint_step: z.number().optional(),
  onnx_sha256: z.string().optional(),
  command: z.string().optional(),
});
export type TaskNetMeta = z.infer<typeof TaskNetMetaSchema>;

export class TaskNet {
  private constructor(readonly dir: string, readonly meta: TaskNetMeta, private readonly session: ort.InferenceSession) {}

  /** Opens the net in `dir`; a clear error names what is missing or malformed. */
  static async open(dir: string, threads = 2): Promise<TaskNet> {
    const metaFile = path.join(dir, 'meta.json'), onnxFile = path.join(dir, 'model.onnx');
    if (!existsSync(metaFile) || !existsSync(onnxFile)) throw new Error(`${dir} holds no task-specific net (model.onnx and meta.json)`);
    const parsed = TaskNetMetaSchema.safeParse(JSON.parse(readFileSync(metaFile, 'utf8')));
    if (!parsed.success) throw new Error(`${metaFile}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return TaskNet.fromFile(onnxFile, parsed.data, threads);
  }

  /** The net in `onnxFile`, described by `meta` (a model's task-net specialist: the manifest describes it). */
  static async fromFile(onnxFile: string, meta: TaskNetMeta, threads = 2): Promise<TaskNet> {
    const session = await ort.InferenceSession.create(onnxFile, { ...sessionOptions(threads), executionProviders: ['cpu'] });
    return new TaskNet(path.dirname(onnxFile), meta, session);
  }

  /** Logits of every structure (meta.structures order) at the image's size: the letterboxed image, or native-scale tiles averaged. */
  async segment(image: RasterImage): Promise<FloatGrid[]> {
    return (await this.logitSources(image)).map((src) => deferredGrid(src, image.width, image.height));
  }

  /** The same logits as the grids the net drew and where they sit on the image (small to keep; `deferredGrid` makes the image-size grids). */
  async logitSources(image: RasterImage): Promise<GridSource[]> {
    return this.meta.tiled ? this.tiled(image) : this.whole(image);
  }

  private async run(pixels: Uint8Array): Promise<Float32Array[]> {
    const s = this.meta.input_size, plane = s * s;
    const x = new Float32Array(3 * plane);
    for (let i = 0; i < plane; i++) {
      x[i] = pixels[i * 3];
      x[plane + i] = pixels[i * 3 + 1];
      x[2 * plane + i] = pixels[i * 3 + 2];
    }
    const out = await this.session.run({ pixels: new ort.Tensor('float32', x, [1, 3, s, s]) });
    const data = out.logits.data as Float32Array;
    return this.meta.structures.map((_, k) => data.subarray(k * plane, (k + 1) * plane));
  }

  private async whole(image: RasterImage): Promise<GridSource[]> {
    const s = this.meta.input_size;
    const b = letterboxGeometry(image.width, image.height, s);
    const planes = await this.run(letterbox(image, s).pixels);
    const place = { left: b.left, top: b.top, scaleX: b.innerW / image.width, scaleY: b.innerH / image.height };
    return planes.map((p) => ({ grid: { width: s, height: s, data: p.slice() }, gridSpan: s, place }));
  }

  private async tiled(image: RasterImage): Promise<GridSource[]> {
    const s = this.meta.input_size, tile = this.meta.tile ?? { size: s, stride: Math.round((s * 3) / 4), native_max_side: 512 };
    let native = image;
    const scale = Math.min(1, tile.native_max_side / Math.max(image.width, image.height));
    if (scale !== 1) {
      const w = roundHalfEven(image.width * scale), h = roundHalfEven(image.height * scale);
      native = { width: w, height: h, data: resizeRgb(image, w, h), format: image.format };
    }
    const W = Math.max(native.width, s), H = Math.max(native.height, s), K = this.meta.structures.length;
    const acc = Array.from({ length: K }, () => new Float32Array(W * H));
    const cnt = new Float32Array(W * H);
    for (const ty of tileOrigins(H, s, tile.stride)) {
      for (const tx of tileOrigins(W, s, tile.stride)) {
        const px = new Uint8Array(s * s * 3);
        for (let y = 0; y < s && ty + y < native.height; y++) {
          const w = Math.max(0, Math.min(s, native.width - tx));
          px.set(native.data.subarray(((ty + y) * native.width + tx) * 3, ((ty + y) * native.width + tx + w) * 3), y * s * 3);
        }
        const planes = await this.run(px);
        for (let y = 0; y < s; y++) {
          for (let x = 0; x < s; x++) {
            const q = (ty + y) * W + tx + x;
            cnt[q]++;
            for (let k = 0; k < K; k++) acc[k][q] += planes[k][y * s + x];
          }
        }
      }
    }
    return acc.map((a) => {
      const nat = new Float32Array(native.width * native.height);
      for (let y = 0; y < native.height; y++) for (let x = 0; x < native.width; x++) nat[y * native.width + x] = a[y * W + x] / cnt[y * W + x];
      return { grid: { width: native.width, height: native.height, data: nat }, gridSpan: native.width, place: { left: 0, top: 0, scaleX: native.width / image.width, scaleY: native.height / image.height } };
    });
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
