import type { FloatGrid, GridSource, RasterImage } from '../image/raster.js';
import type { ModelEntry } from './manifest.js';
import type { FeatureMap } from '../adapters/pixel-head.js';

/** Text-independent features of one image (opaque to the pipeline; the runner owns them). */
export interface ImageFeatures {
  /** Approximate bytes held, for cache accounting. */
  bytes: number;
  /** Global pooled image feature (for out-of-distribution scoring). */
  pooled: Float32Array;
  readonly tensors: unknown;
  /** The specialist whose image encoder made these features (its mask decoder must read them); none: the model's own. */
  readonly specialist?: string;
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
  /**
   * rgb: the letterboxed S x S input square, 8-bit RGB interleaved; the runner normalises it as its model expects.
   * specialist: one of the manifest entry's `specialists` by name (only runners that have them take it).
   */
  encodeImage(rgb: Uint8Array, specialist?: string): Promise<ImageFeatures>;
  /** One vector per prompt: an embedding for two-stage models, the token ids for single-graph models (opaque to the pipeline). */
  encodeText(prompts: string[]): Promise<Float32Array[]>;
  decode(features: ImageFeatures, textEmbeds: Float32Array[]): Promise<DecodeOutput>;
  /** The token ids the text encoder sees, for tests and debugging. */
  tokenize(prompts: string[]): Promise<{ ids: number[][] }>;
  /** Logits of a task-specific specialist's structures, in its `structures` order: the grids it drew and their place on the image (runners whose manifest entries may have one). */
  taskNetLogits?(specialist: string, image: RasterImage): Promise<GridSource[]>;
  /** The image encoder's spatial feature maps, finest first (models that offer few-shot adapters). */
  featureMaps?(features: ImageFeatures): FeatureMap[];
  dispose(): Promise<void>;
}

/** A point or box prompt in original image pixels (x right, y down). */
export interface RegionPrompt {
  /** [x1, y1, x2, y2] */
  box?: [number, number, number, number];
  /** [x, y, label]: label 1 = on the structure, 0 = background */
  points?: [number, number, number][];
}

export interface RegionMask {
  /** Mask logits at the original image size. */
  logits: FloatGrid;
  /** The model's predicted IoU of this mask (the best of its candidate masks). */
  iou: number;
  /** Which of the model's candidate masks was chosen. */
  candidate: number;
}

/** Box/point-prompted mask models (the SAM family). */
export interface RegionMaskModel {
  readonly entry: ModelEntry;
  load(): Promise<void>;
  readonly loaded: boolean;
  segmentRegions(image: { width: number; height: number; data: Uint8Array }, imageKey: string, prompts: RegionPrompt[]): Promise<RegionMask[]>;
  dispose(): Promise<void>;
}
