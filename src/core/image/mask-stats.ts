/** Geometry of a binary mask (1 byte per pixel, non-zero = inside). */
export interface MaskStats {
  areaPx: number;
  bbox: [number, number, number, number] | null; // x, y, width, height
  centroid: [number, number] | null; // x, y
  components: number;
  largestComponentPx: number;
}

/**
 * Area, bounding box, centroid and 8-connected components of a mask. `within`, when given, is a
 * rectangle known to hold every mask pixel (null: the mask is empty); only it is read.
 */
export function maskStats(mask: Uint8Array, width: number, height: number, within?: PixelRect | null): MaskStats {
  const r = within === undefined ? { x: 0, y: 0, w: width, h: height } : within;
  let area = 0, sx = 0, sy = 0, x0 = width, y0 = height, x1 = -1, y1 = -1;
  if (r) {
    for (let y = r.y; y < r.y + r.h; y++) {
      for (let x = r.x; x < r.x + r.w; x++) {
        if (mask[y * width + x]) {
          area++; sx += x; sy += y;
          if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
        }
      }
    }
  }
  if (area === 0) return { areaPx: 0, bbox: null, centroid: null, components: 0, largestComponentPx: 0 };
  const { count, sizes } = componentSizes(mask, width, { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 });
  return {
    areaPx: area,
    bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
    centroid: [sx / area, sy / area],
    components: count,
    largestComponentPx: sizes.length ? Math.max(...sizes) : 0,
  };
}

/** The flood fill's stack: one buffer reused by every call (the fill is synchronous), grown as needed. */
let stackBuffer = new Int32Array(0);
function scratchStack(n: number): Int32Array {
  if (stackBuffer.length < n) stackBuffer = new Int32Array(n);
  return stackBuffer;
}

/** A rectangle of pixels: left, top, width, height. */
export interface PixelRect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * How many 8-connected components a mask has and their sizes, looking only inside `rect`, which
 * must hold every mask pixel (its bounding box): what components() counts, from runs of mask
 * pixels along rows joined to the runs they touch in the row above (union-find), without a label
 * per pixel. Sizes come in no particular order.
 */
export function componentSizes(mask: Uint8Array, width: number, rect: PixelRect): { count: number; sizes: number[] } {
  const parent: number[] = [], size: number[] = [];
  const find = (a: number): number => {
    while (parent[a] !== a) a = parent[a] = parent[parent[a]];
    return a;
  };
  let prev: number[] = [], cur: number[] = []; // runs of the row above and this row: start, end (inclusive), run id
  for (let y = rect.y; y < rect.y + rect.h; y++) {
    cur = [];
    const row = y * width;
    let k = 0; // first run above that may touch
    for (let x = rect.x; x < rect.x + rect.w; x++) {
      if (!mask[row + x]) continue;
      const a = x;
      while (x + 1 < rect.x + rect.w && mask[row + x + 1]) x++;
      const id = parent.length;
      parent.push(id);
      size.push(x - a + 1);
      // runs above touching [a - 1, x + 1] (8-connected)
      while (k < prev.length && prev[k + 1] < a - 1) k += 3;
      for (let j = k; j < prev.length && prev[j] <= x + 1; j += 3) {
        const ra = find(prev[j + 2]), rb = find(id);
        if (ra !== rb) {
          parent[rb] = ra;
          size[ra] += size[rb];
        }
      }
      cur.push(a, x, id);
    }
    prev = cur;
  }
  const sizes: number[] = [];
  for (let i = 0; i < parent.length; i++) if (parent[i] === i) sizes.push(size[i]);
  return { count: sizes.length, sizes };
}

/** Labels 8-connected components with an explicit stack (no recursion depth limit). */
export function components(mask: Uint8Array, width: number, height: number): { count: number; sizes: number[]; labels: Int32Array } {
  const labels = new Int32Array(width * height);
  const sizes: number[] = [];
  const stack = scratchStack(width * height);
  let count = 0;
  for (let i = 0; i < width * height; i++) {
    if (!mask[i] || labels[i]) continue;
    count++;
    let sp = 0, size = 0;
    stack[sp++] = i;
    labels[i] = count;
    while (sp) {
      const p = stack[--sp];
      size++;
      const px = p % width, py = (p - px) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = py + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = px + dx;
          if (nx < 0 || nx >= width) continue;
          const q = ny * width + nx;
          if (mask[q] && !labels[q]) {
            labels[q] = count;
            stack[sp++] = q;
          }
        }
      }
    }
    sizes.push(size);
  }
  return { count, sizes, labels };
}

/** Clears every connected component of the mask but the largest, in place; returns how many were cleared. */
export function keepLargestComponent(mask: Uint8Array, width: number, height: number): number {
  const c = components(mask, width, height);
  if (c.count <= 1) return 0;
  let best = 0;
  for (let k = 1; k < c.count; k++) if (c.sizes[k] > c.sizes[best]) best = k;
  for (let i = 0; i < mask.length; i++) if (mask[i] && c.labels[i] !== best + 1) mask[i] = 0;
  return c.count - 1;
}
