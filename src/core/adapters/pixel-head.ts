import { seededRandom } from '../stats.js';

/**
 * The few-shot head: a two-layer perceptron over the frozen image encoder's multi-scale features,
 * one sample per cell of a G x G grid over the model's input square (G = 128 by default: 2 input
 * pixels a cell on a 256 px input). The grid is the head's own: its position input has its size.
 * Every scale is brought to that grid linearly (average pooling of the finer maps, bilinear
 * upsampling of the coarser ones), so the first layer can also run at each map's own resolution
 * and be resampled afterwards: training reads single cells, serving computes the whole grid in a
 * few million multiply-adds.
 */

/** One of the image encoder's feature maps (NCHW with N = 1). */
export interface FeatureMap {
  name: string;
  channels: number;
  height: number;
  width: number;
  data: Float32Array;
}

/** The grid a new head predicts on (cells per side of the model's input square). */
export const HEAD_GRID = 128;

export interface PixelHead {
  /** Feature maps read, in order, with their channel counts (checked against the model's). */
  inputs: { name: string; channels: number; height: number; width: number }[];
  hidden: number;
  /** Per-feature standardisation fitted on the support cells. */
  mean: Float32Array;
  std: Float32Array;
  /** [D x hidden], feature-major. */
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: number;
}

/** How one grid cell reads a map: source indices and weights (pooling or bilinear taps). */
interface Taps {
  index: Int32Array;
  weight: Float32Array;
  /** taps per cell */
  per: number;
}

const tapCache = new Map<string, Taps>();

/** Taps that bring an h x w map to the G x G grid (align-corners-false bilinear, or r x r average pooling). */
function tapsFor(h: number, w: number, G: number): Taps {
  const key = `${h}x${w}:${G}`;
  let t = tapCache.get(key);
  if (t) return t;
  if (h >= G) {
    const r = h / G;
    if (!Number.isInteger(r) || w / G !== r) throw new Error(`feature map ${h}x${w} does not pool evenly to ${G}`);
    const per = r * r;
    const index = new Int32Array(G * G * per), weight = new Float32Array(G * G * per).fill(1 / per);
    for (let y = 0; y < G; y++) for (let x = 0; x < G; x++) {
      let k = (y * G + x) * per;
      for (let dy = 0; dy < r; dy++) for (let dx = 0; dx < r; dx++) index[k++] = (y * r + dy) * w + x * r + dx;
    }
    t = { index, weight, per };
  } else {
    const index = new Int32Array(G * G * 4), weight = new Float32Array(G * G * 4);
    const axis = (n: number, i: number) => {
      const s = Math.min(Math.max(((i + 0.5) * n) / G - 0.5, 0), n - 1);
      const i0 = Math.floor(s);
      return { i0, i1: Math.min(i0 + 1, n - 1), f: s - i0 };
    };
    for (let y = 0; y < G; y++) {
      const ay = axis(h, y);
      for (let x = 0; x < G; x++) {
        const ax = axis(w, x);
        const k = (y * G + x) * 4;
        index[k] = ay.i0 * w + ax.i0; weight[k] = (1 - ay.f) * (1 - ax.f);
        index[k + 1] = ay.i0 * w + ax.i1; weight[k + 1] = (1 - ay.f) * ax.f;
        index[k + 2] = ay.i1 * w + ax.i0; weight[k + 2] = ay.f * (1 - ax.f);
        index[k + 3] = ay.i1 * w + ax.i1; weight[k + 3] = ay.f * ax.f;
      }
    }
    t = { index, weight, per: 4 };
  }
  tapCache.set(key, t);
  return t;
}

/**
 * Two maps of where each grid cell lies in the input square (x and y from -1 to 1): the image
 * encoder's features say little about position, and a structure with a side (the left kidney,
 * not the right) is told apart by it.
 */
export function positionMap(G: number): FeatureMap {
  const data = new Float32Array(2 * G * G);
  for (let y = 0; y < G; y++) for (let x = 0; x < G; x++) {
    data[y * G + x] = ((x + 0.5) / G) * 2 - 1;
    data[G * G + y * G + x] = ((y + 0.5) / G) * 2 - 1;
  }
  return { name: 'position', channels: 2, height: G, width: G, data };
}

export const featureDims = (maps: Pick<FeatureMap, 'channels'>[]): number => maps.reduce((n, m) => n + m.channels, 0);

/** The grid of a head or of the maps it reads: the size of the position map among them. */
export function gridOf(maps: Pick<FeatureMap, 'name' | 'height'>[]): number {
  const p = maps.find((m) => m.name === 'position');
  if (!p) throw new Error('the head reads no position map, so its grid is unknown');
  return p.height;
}

/** Why a head's inputs cannot be read on its grid (no square position map, a map that does not pool evenly to it), or null. */
export function gridProblem(inputs: Pick<FeatureMap, 'name' | 'height' | 'width'>[]): string | null {
  const p = inputs.find((m) => m.name === 'position');
  if (!p || p.height !== p.width || p.height < 1 || p.height > 1024) return 'its head has no square position map of at most 1024 cells a side';
  const G = p.height;
  const bad = inputs.find((m) => m.height >= G && (m.height % G !== 0 || m.width / G !== m.height / G));
  return bad ? `its feature map ${bad.name} [${bad.height}x${bad.width}] does not pool evenly to the head's ${G} x ${G} grid` : null;
}

/** The feature rows of the given grid cells: [cells.length x D], every map resampled to the grid. */
export function cellFeatures(maps: FeatureMap[], cells: ArrayLike<number>): Float32Array {
  const D = featureDims(maps), G = gridOf(maps);
  const out = new Float32Array(cells.length * D);
  let off = 0;
  for (const m of maps) {
    const t = tapsFor(m.height, m.width, G);
    const plane = m.height * m.width;
    for (let r = 0; r < cells.length; r++) {
      const base = cells[r] * t.per;
      const row = r * D + off;
      for (let c = 0; c < m.channels; c++) {
        const src = c * plane;
        let v = 0;
        for (let k = 0; k < t.per; k++) v += t.weight[base + k] * m.data[src + t.index[base + k]];
        out[row + c] = v;
      }
    }
    off += m.channels;
  }
  return out;
}

/** Checks that the maps are the ones the head was fitted on. */
function checkInputs(head: PixelHead, maps: FeatureMap[]): void {
  const ok = head.inputs.length === maps.length && head.inputs.every((s, i) => s.name === maps[i].name && s.channels === maps[i].channels && s.height === maps[i].height && s.width === maps[i].width);
  if (!ok) throw new Error(`the adapter was fitted on feature maps ${head.inputs.map((s) => `${s.name}[${s.channels}x${s.height}x${s.width}]`).join(', ')}, the model gives ${maps.map((s) => `${s.name}[${s.channels}x${s.height}x${s.width}]`).join(', ')}`);
}

/**
 * The head's logits over the whole G x G grid. The standardisation is folded into the first layer,
 * which runs on each map at its own resolution before resampling (both are linear).
 */
export function predictGrid(head: PixelHead, maps: FeatureMap[]): Float32Array {
  checkInputs(head, maps);
  const G = gridOf(head.inputs), H = head.hidden, cells = G * G;
  const pre = new Float32Array(cells * H);
  // folded bias: b1 - sum_d w1[d] * mean[d] / std[d]
  const b = Float32Array.from(head.b1);
  let d0 = 0;
  for (const m of maps) {
    const plane = m.height * m.width;
    // projection of this map at its own resolution: [plane x H]
    const proj = new Float32Array(plane * H);
    for (let c = 0; c < m.channels; c++) {
      const d = d0 + c;
      const inv = 1 / head.std[d];
      const wrow = head.w1.subarray(d * H, (d + 1) * H);
      for (let j = 0; j < H; j++) b[j] -= wrow[j] * head.mean[d] * inv;
      const src = m.data.subarray(c * plane, (c + 1) * plane);
      for (let p = 0; p < plane; p++) {
        const v = src[p] * inv;
        if (v === 0) continue;
        const o = p * H;
        for (let j = 0; j < H; j++) proj[o + j] += v * wrow[j];
      }
    }
    const t = tapsFor(m.height, m.width, G);
    for (let q = 0; q < cells; q++) {
      const o = q * H;
      for (let k = 0; k < t.per; k++) {
        const wt = t.weight[q * t.per + k];
        if (wt === 0) continue;
        const s = t.index[q * t.per + k] * H;
        for (let j = 0; j < H; j++) pre[o + j] += wt * proj[s + j];
      }
    }
    d0 += m.channels;
  }
  const out = new Float32Array(cells);
  for (let q = 0; q < cells; q++) {
    let z = head.b2;
    const o = q * H;
    for (let j = 0; j < H; j++) {
      const a = pre[o + j] + b[j];
      if (a > 0) z += a * head.w2[j];
    }
    out[q] = z;
  }
  return out;
}

/** The head's logits for rows of cellFeatures (training and validation read these). */
export function predictRows(head: PixelHead, x: Float32Array, n: number): Float32Array {
  const D = head.mean.length, H = head.hidden;
  const out = new Float32Array(n);
  const h = new Float32Array(H);
  for (let r = 0; r < n; r++) {
    h.set(head.b1);
    for (let d = 0; d < D; d++) {
      const v = (x[r * D + d] - head.mean[d]) / head.std[d];
      if (v === 0) continue;
      const o = d * H;
      for (let j = 0; j < H; j++) h[j] += v * head.w1[o + j];
    }
    let z = head.b2;
    for (let j = 0; j < H; j++) if (h[j] > 0) z += h[j] * head.w2[j];
    out[r] = z;
  }
  return out;
}

export interface TrainOptions {
  hidden: number;
  steps: number;
  batch: number;
  lr: number;
  weightDecay: number;
  seed: number;
  /** Called every 5 steps with the step reached (a long fit gives the event loop turns there). */
  onStep?: (step: number, loss: number) => void | Promise<void>;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'seed' | 'onStep'> = { hidden: 16, steps: 1000, batch: 256, lr: 3e-3, weightDecay: 1e-3 };

/** The perceptron's parameters while it trains, in the order the optimiser walks them. */
interface Weights {
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  /** one value: the output bias */
  b2: Float32Array;
}

const weightList = (w: Weights): Float32Array[] => [w.w1, w.b1, w.w2, w.b2];

/** Per-feature mean and standard deviation of the n rows of x (the head's standardisation). */
function standardisation(x: Float32Array, n: number, D: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float32Array(D), std = new Float32Array(D);
  for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) mean[d] += x[i * D + d];
  for (let d = 0; d < D; d++) mean[d] /= n;
  for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) std[d] += (x[i * D + d] - mean[d]) ** 2;
  for (let d = 0; d < D; d++) std[d] = Math.sqrt(std[d] / n) + 1e-4;
  return { mean, std };
}

/** He-initialised first layer, zero biases, a 1/sqrt(H)-scaled output layer. */
function initialWeights(D: number, H: number, rnd: () => number): Weights {
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const w1 = new Float32Array(D * H).map(() => gauss() * Math.sqrt(2 / D));
  const w2 = new Float32Array(H).map(() => gauss() * Math.sqrt(1 / H));
  return { w1, b1: new Float32Array(H), w2, b2: new Float32Array(1) };
}

/** One training batch, standardised: rows [x | y] for B cells, with room for the pass's activations (allocated once per fit). */
interface Batch {
  x: Float32Array;
  y: Uint8Array;
  /** [B x hidden] first-layer sums, [B] output gradients, [hidden] one row's hidden gradient */
  hidden: Float32Array;
  dz: Float32Array;
  dh: Float32Array;
}

/** Fills the batch half from the structure's cells and half from the rest. */
function drawBalancedBatch(batch: Batch, x: Float32Array, y: Uint8Array, cells: { pos: number[]; neg: number[] }, scale: { mean: Float32Array; std: Float32Array }, rnd: () => number): void {
  const B = batch.y.length, D = scale.mean.length;
  for (let r = 0; r < B; r++) {
    const from = r < B / 2 ? cells.pos : cells.neg;
    const i = from[Math.floor(rnd() * from.length)];
    batch.y[r] = y[i];
    for (let d = 0; d < D; d++) batch.x[r * D + d] = (x[i * D + d] - scale.mean[d]) / scale.std[d];
  }
}

/** Forward and backward pass of the batch's mean binary cross-entropy: fills grads, returns the summed loss. */
function batchGradients(w: Weights, batch: Batch, grads: Weights): number {
  const B = batch.y.length, H = w.b1.length, D = w.w1.length / H;
  for (const g of weightList(grads)) g.fill(0);
  const { hidden, dz, dh } = batch;
  let loss = 0;
  for (let r = 0; r < B; r++) {
    const h = hidden.subarray(r * H, (r + 1) * H);
    h.set(w.b1);
    const xr = batch.x.subarray(r * D, (r + 1) * D);
    for (let d = 0; d < D; d++) {
      const v = xr[d];
      const off = d * H;
      for (let j = 0; j < H; j++) h[j] += v * w.w1[off + j];
    }
    let z = w.b2[0];
    for (let j = 0; j < H; j++) if (h[j] > 0) z += h[j] * w.w2[j];
    const p = 1 / (1 + Math.exp(-z));
    loss += batch.y[r] ? -Math.log(Math.max(p, 1e-7)) : -Math.log(Math.max(1 - p, 1e-7));
    dz[r] = (p - batch.y[r]) / B;
  }
  for (let r = 0; r < B; r++) {
    const h = hidden.subarray(r * H, (r + 1) * H);
    const g = dz[r];
    grads.b2[0] += g;
    dh.fill(0);
    for (let j = 0; j < H; j++) {
      if (h[j] <= 0) continue;
      grads.w2[j] += g * h[j];
      dh[j] = g * w.w2[j];
      grads.b1[j] += dh[j];
    }
    const xr = batch.x.subarray(r * D, (r + 1) * D);
    for (let d = 0; d < D; d++) {
      const v = xr[d];
      if (v === 0) continue;
      const off = d * H;
      for (let j = 0; j < H; j++) grads.w1[off + j] += v * dh[j];
    }
  }
  return loss;
}

/** AdamW with bias correction; weight decay on the two weight matrices, not on the biases. */
class AdamW {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  constructor(private readonly w: Weights, private readonly weightDecay: number) {
    this.m = weightList(w).map((p) => new Float32Array(p.length));
    this.v = weightList(w).map((p) => new Float32Array(p.length));
  }

  step(grads: Weights, step: number, lr: number): void {
    const beta1 = 0.9, beta2 = 0.999;
    const c1 = 1 - beta1 ** step, c2 = 1 - beta2 ** step;
    const gs = weightList(grads);
    weightList(this.w).forEach((p, k) => {
      const g = gs[k], a = this.m[k], v = this.v[k];
      const decay = k === 0 || k === 2 ? this.weightDecay : 0;
      for (let q = 0; q < p.length; q++) {
        a[q] = beta1 * a[q] + (1 - beta1) * g[q];
        v[q] = beta2 * v[q] + (1 - beta2) * g[q] * g[q];
        p[q] -= lr * ((a[q] / c1) / (Math.sqrt(v[q] / c2) + 1e-8) + decay * p[q]);
      }
    });
  }
}

/**
 * Fits the head on labelled cells (x: [n x D] from cellFeatures, y: 0/1) with AdamW on batches
 * drawn half from the structure's cells and half from the rest, so that a small structure is not
 * drowned by its background; the learning rate follows a cosine. Deterministic for a seed.
 */
export async function trainPixelHead(inputs: PixelHead['inputs'], x: Float32Array, y: Uint8Array, o: TrainOptions): Promise<PixelHead> {
  const n = y.length, D = featureDims(inputs), H = o.hidden;
  if (x.length !== n * D) throw new Error(`feature rows hold ${x.length} values, expected ${n} x ${D}`);
  const cells = { pos: [] as number[], neg: [] as number[] };
  for (let i = 0; i < n; i++) (y[i] ? cells.pos : cells.neg).push(i);
  if (!cells.pos.length || !cells.neg.length) throw new Error('the support cells must hold both structure and background');
  const scale = standardisation(x, n, D);
  const rnd = seededRandom(o.seed);
  const w = initialWeights(D, H, rnd);
  const grads: Weights = { w1: new Float32Array(D * H), b1: new Float32Array(H), w2: new Float32Array(H), b2: new Float32Array(1) };
  const optimiser = new AdamW(w, o.weightDecay);
  const batch: Batch = { x: new Float32Array(o.batch * D), y: new Uint8Array(o.batch), hidden: new Float32Array(o.batch * H), dz: new Float32Array(o.batch), dh: new Float32Array(H) };
  for (let step = 1; step <= o.steps; step++) {
    drawBalancedBatch(batch, x, y, cells, scale, rnd);
    const loss = batchGradients(w, batch, grads);
    optimiser.step(grads, step, 0.5 * o.lr * (1 + Math.cos((Math.PI * (step - 1)) / o.steps)));
    if (o.onStep && (step % 5 === 0 || step === o.steps)) await o.onStep(step, loss / o.batch);
  }
  return { inputs, hidden: H, mean: scale.mean, std: scale.std, w1: w.w1, b1: w.b1, w2: w.w2, b2: w.b2[0] };
}
