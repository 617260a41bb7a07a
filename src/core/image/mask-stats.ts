import { keepLargestRunComponent, MaskRuns, runStats } from './mask-runs.js';

/** Geometry of a binary mask (1 byte per pixel, non-zero = inside). */
export interface MaskStats {
  areaPx: number;
  bbox: [number, number, number, number] | null; // x, y, width, height
  centroid: [number, number] | null; // x, y
  components: number;
  largestComponentPx: number;
}

/**
 * Area, bounding box, centroid and 8-connected components of a mask (from its runs, runStats).
 * `within`, when given, is a rectangle known to hold every mask pixel (null: the mask is empty);
 * only it is read.
 */
export function maskStats(mask: Uint8Array, width: number, height: number, within?: PixelRect | null): MaskStats {
  return runStats(MaskRuns.of(mask, width, height, within));
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

/** Clears every 8-connected component of the mask but the largest (ties: the one met first in raster order), in place; returns how many were cleared. */
export function keepLargestComponent(mask: Uint8Array, width: number, height: number): number {
  return keepLargestRunComponent(MaskRuns.of(mask, width, height), mask);
}
