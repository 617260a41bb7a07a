import type { FloatGrid } from '../image/raster.js';
import type { ModelEntry } from './manifest.js';

/** Text-independent features of one image (opaque to the pipeline; the runner owns them). */
export interface ImageFeatures {
  /** Approximate bytes held, for cache accounting. */
  bytes: number;
  /** Global pooled image feature (for out-of-distribution scoring). */
  pooled: Float32Array;
  readonly tensors: unknown;
}

export interface DecodeOutput {
  /** One grid per prompt, covering the model's whole input square at `mask_stride`. */
  maskLogits: FloatGrid[];
  presenceLogit: number[];
  iouLogit: number[];
  similarity: number[];
}

/** What every model family offers the pipeline. Sessions load lazily once; dispose() frees them. */
export interface SegmentationModel {
  readonly entry: ModelEntry;
  load(): Promise<void>;
  readonly loaded: boolean;
  /** pixels: float32 NCHW [1,3,S,S] already normalised */
  encodeImage(pixels: Float32Array): Promise<ImageFeatures>;
  encodeText(prompts: string[]): Promise<Float32Array[]>;
  decode(features: ImageFeatures, textEmbeds: Float32Array[]): Promise<DecodeOutput>;
  /** The token ids the text encoder sees, for tests and debugging. */
  tokenize(prompts: string[]): Promise<{ ids: number[][] }>;
  dispose(): Promise<void>;
}
