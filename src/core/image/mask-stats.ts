/** Geometry of a binary mask (1 byte per pixel, non-zero = inside). */
export interface MaskStats {
  areaPx: number;
  bbox: [number, number, number, number] | null; // x, y, width, height
  centroid: [number, number] | null; // x, y
  components: number;
  largestComponentPx: number;
}

/** Area, bounding box, centroid and 8-connected components of a mask. */
export function maskStats(mask: Uint8Array, width: number, height: number): MaskStats {
  let area = 0, sx = 0, sy = 0, x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x]) {
        area++; sx += x; sy += y;
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  if (area === 0) return { areaPx: 0, bbox: null, centroid: null, components: 0, largestComponentPx: 0 };
  const { count, sizes } = components(mask, width, height);
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
