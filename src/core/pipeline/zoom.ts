import type { FloatGrid, RasterImage } from '../image/raster.js';

/** A square of the image in its pixels (it may reach beyond the edges). */
export interface Square {
  left: number;
  top: number;
  side: number;
}

/**
 * The second, closer look at a small structure: a square around the first mask's box, with the
 * margin the built-in model saw in training (each side widened by 37.5% of the box, plus 8 input
 * pixels), cut from the original image (zero padding beyond its edges). Undefined when the square
 * would cover more than 3/4 of the image's longer side: then the first look was already close.
 */
export function zoomSquare(box: [number, number, number, number], width: number, height: number, inputSize: number): Square | undefined {
  const [x1, y1, x2, y2] = box;
  const longer = Math.max(width, height);
  const side = Math.round(Math.max(x2 - x1, y2 - y1) * 1.75 + (8 * longer) / inputSize);
  if (side > 0.75 * longer || side < 4) return undefined;
  const cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
  const clampTo = (c: number, n: number) => (side >= n ? Math.round((n - side) / 2) : Math.round(Math.min(Math.max(c - side / 2, 0), n - side)));
  return { left: clampTo(cx, width), top: clampTo(cy, height), side };
}

/** The square cut from the image (RGB; zero outside the image). */
export function cropSquare(image: RasterImage, sq: Square): RasterImage {
  const { left, top, side } = sq;
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= image.height) continue;
    const x0 = Math.max(0, -left), x1 = Math.min(side, image.width - left);
    if (x1 <= x0) continue;
    data.set(image.data.subarray((sy * image.width + left + x0) * 3, (sy * image.width + left + x1) * 3), (y * side + x0) * 3);
  }
  return { width: side, height: side, data, format: image.format };
}

/** Writes the crop's logits into the full-size grid where the square overlaps the image. */
export function pasteSquare(full: FloatGrid, crop: FloatGrid, sq: Square): FloatGrid {
  const out = Float32Array.from(full.data);
  for (let y = 0; y < sq.side; y++) {
    const fy = sq.top + y;
    if (fy < 0 || fy >= full.height) continue;
    for (let x = 0; x < sq.side; x++) {
      const fx = sq.left + x;
      if (fx < 0 || fx >= full.width) continue;
      out[fy * full.width + fx] = crop.data[y * crop.width + x];
    }
  }
  return { width: full.width, height: full.height, data: out };
}
