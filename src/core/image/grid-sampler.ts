import { MaskRuns } from './mask-runs.js';
import type { PixelRect } from './mask-stats.js';
import type { FloatGrid, GridSource } from './raster.js';

/**
 * The values mapGrid interpolates from a model's grid onto an image (bilinear, clamped at the
 * edges), available pixel by pixel, as a whole array, or as a thresholded mask, all with the same
 * arithmetic: a row of the grid is interpolated along x in float64, two such rows along y, and the
 * result rounded to float32 as the array stores it.
 */
export class GridSampler {
  private readonly cx0: Int32Array;
  private readonly cx1: Int32Array;
  private readonly cfx: Float64Array;
  private readonly ry0: Int32Array;
  private readonly ry1: Int32Array;
  private readonly rfy: Float64Array;

  constructor(readonly source: GridSource, readonly width: number, readonly height: number) {
    const { grid: g, gridSpan, place } = source;
    const k = g.width / gridSpan;
    this.cx0 = new Int32Array(width);
    this.cx1 = new Int32Array(width);
    this.cfx = new Float64Array(width);
    for (let u = 0; u < width; u++) {
      const xIn = place.left + (u + 0.5) * place.scaleX; // input-space coordinate (pixel edges)
      const xc = Math.min(Math.max(xIn * k - 0.5, 0), g.width - 1);
      const x0 = Math.floor(xc);
      this.cx0[u] = x0;
      this.cx1[u] = Math.min(x0 + 1, g.width - 1);
      this.cfx[u] = xc - x0;
    }
    this.ry0 = new Int32Array(height);
    this.ry1 = new Int32Array(height);
    this.rfy = new Float64Array(height);
    for (let v = 0; v < height; v++) {
      const yIn = place.top + (v + 0.5) * place.scaleY;
      const yc = Math.min(Math.max(yIn * k - 0.5, 0), g.height - 1);
      const y0 = Math.floor(yc);
      this.ry0[v] = y0;
      this.ry1[v] = Math.min(y0 + 1, g.height - 1);
      this.rfy[v] = yc - y0;
    }
  }

  /** The value at pixel (u, v). */
  at(u: number, v: number): number {
    const g = this.source.grid, d = g.data, W = g.width;
    const x0 = this.cx0[u], x1 = this.cx1[u], fx = this.cfx[u];
    const r0 = this.ry0[v] * W, r1 = this.ry1[v] * W, fy = this.rfy[v];
    const a = d[r0 + x0] * (1 - fx) + d[r0 + x1] * fx;
    const b = d[r1 + x0] * (1 - fx) + d[r1 + x1] * fx;
    return Math.fround(a * (1 - fy) + b * fy);
  }

  /** Every pixel's value, row by row (each grid row interpolated along x once, reused by the image rows that share it). */
  values(): Float32Array {
    return this.region({ x: 0, y: 0, w: this.width, h: this.height });
  }

  /** The values of a rectangle of pixels, row by row (as values() computes them). */
  region(r: PixelRect): Float32Array {
    const g = this.source.grid, d = g.data, W = g.width;
    const { cx0, cx1, cfx } = this;
    const out = new Float32Array(r.w * r.h);
    const rows = new Map<number, Float64Array>();
    const rowAt = (y: number): Float64Array => {
      let row = rows.get(y);
      if (row) return row;
      row = new Float64Array(r.w);
      const o = y * W;
      for (let k = 0; k < r.w; k++) {
        const u = r.x + k;
        row[k] = d[o + cx0[u]] * (1 - cfx[u]) + d[o + cx1[u]] * cfx[u];
      }
      if (rows.size > 4) rows.delete(rows.keys().next().value!); // rows are visited in order: a few suffice
      rows.set(y, row);
      return row;
    };
    for (let j = 0; j < r.h; j++) {
      const v = r.y + j;
      const a = rowAt(this.ry0[v]), b = rowAt(this.ry1[v]), fy = this.rfy[v], o = j * r.w;
      for (let k = 0; k < r.w; k++) out[o + k] = a[k] * (1 - fy) + b[k] * fy;
    }
    return out;
  }

  /**
   * The runs of the pixels whose value is above `hi` (in the mask) or below `lo` (not), and
   * `decide(value)` for those in between. A pixel's value lies between the smallest and largest of
   * its grid cell's four corners, so cells wholly above hi or below lo are decided as a whole,
   * without interpolating; hi and lo must stand clear of the true cut by far more than float64
   * rounding.
   */
  threshold(hi: number, lo: number, decide: (value: number) => number): MaskRuns {
    const { width, height, ry0 } = this;
    const W = this.source.grid.width;
    const { state, from, to } = this.cellStates(hi, lo);
    const { spans, spanAt } = this.columnSpans();
    const runs = MaskRuns.builder(width, height);
    for (let v = 0; v < height; v++) {
      const cy = ry0[v], cells = cy * W;
      if (to[cy] < from[cy]) continue;
      runs.beginRow(v);
      for (let i = spanAt[from[cy]]; i < spans.length && spans[i] <= to[cy]; i += 3) {
        const st = state[cells + spans[i]];
        if (st === 0) continue;
        const a = spans[i + 1], b = spans[i + 2];
        if (st === 1) runs.include(a, b);
        else for (let u = a; u < b; u++) if (decide(this.at(u, v))) runs.include(u, u + 1);
      }
    }
    return runs.done();
  }

  /**
   * Per grid cell (its top-left corner): 1 when all four corners are above hi, 0 when all are below
   * lo, 2 when mixed; and each cell row's range of cells that are not all below lo (from > to:
   * none), found from each grid row's first and last point not below lo. Cells outside the ranges
   * are 0 without being looked at.
   */
  private cellStates(hi: number, lo: number): { state: Uint8Array; from: Int32Array; to: Int32Array } {
    const g = this.source.grid, d = g.data, W = g.width, H = g.height;
    const first = new Int32Array(H).fill(W), last = new Int32Array(H).fill(-1);
    for (let y = 0; y < H; y++) {
      const o = y * W;
      let x = 0;
      while (x < W && d[o + x] < lo) x++;
      if (x === W) continue;
      first[y] = x;
      x = W - 1;
      while (d[o + x] < lo) x--;
      last[y] = x;
    }
    const state = new Uint8Array(W * H);
    const from = new Int32Array(H), to = new Int32Array(H).fill(-1);
    for (let y = 0; y < H; y++) {
      const y1 = Math.min(y + 1, H - 1), r0 = y * W, r1 = y1 * W;
      from[y] = Math.max(0, Math.min(first[y], first[y1]) - 1);
      to[y] = Math.max(last[y], last[y1]);
      for (let x = from[y]; x <= to[y]; x++) {
        const x1 = x + 1 < W ? x + 1 : x;
        const c0 = d[r0 + x], c1 = d[r0 + x1], c2 = d[r1 + x], c3 = d[r1 + x1];
        if (c0 > hi && c1 > hi && c2 > hi && c3 > hi) state[r0 + x] = 1;
        else if (!(c0 < lo && c1 < lo && c2 < lo && c3 < lo)) state[r0 + x] = 2;
      }
    }
    return { state, from, to };
  }

  /**
   * The pixel columns each grid column's cells cover, as (grid column, first pixel, end) triples
   * for the grid columns that cover any, left to right; spanAt[c]: the index of the first triple
   * of a grid column at or right of c.
   */
  private columnSpans(): { spans: Int32Array; spanAt: Int32Array } {
    const { cx0, width } = this;
    const W = this.source.grid.width;
    const out: number[] = [];
    for (let u = 0; u < width; ) {
      const c = cx0[u], a = u;
      while (u < width && cx0[u] === c) u++; // cx0 never decreases along a row
      out.push(c, a, u);
    }
    const spanAt = new Int32Array(W + 1);
    for (let c = 0, i = 0; c <= W; c++) {
      while (i < out.length && out[i] < c) i += 3;
      spanAt[c] = i;
    }
    return { spans: Int32Array.from(out), spanAt };
  }
}

const deferred = new WeakSet<FloatGrid>();

/** A grid interpolated from a smaller one (mapGrid's values), made only when its data is first read. */
export function deferredGrid(source: GridSource, width: number, height: number): FloatGrid & { from: GridSource } {
  let data: Float32Array | undefined;
  const grid = {
    width,
    height,
    from: source,
    get data() {
      return (data ??= new GridSampler(source, width, height).values());
    },
  };
  deferred.add(grid);
  return grid;
}

/** A sampler of a deferred grid (deferredGrid), for reading it without making it; undefined for a grid held as an array. */
export function samplerOf(g: FloatGrid): GridSampler | undefined {
  return g.from && deferred.has(g) ? new GridSampler(g.from, g.width, g.height) : undefined;
}
