import type { FloatGrid } from '../image/raster.js';
import { keepLargestComponent } from '../image/mask-stats.js';

/** [x1, y1, x2, y2] of the pixels whose logit is at least zCut (of their largest connected region with `largestComponent`), widened by `margin` of the image's longer side (at least 2 px when margin > 0); undefined when none. */
export function boxOf(g: FloatGrid, zCut: number, width: number, height: number, margin = 0.03, o: { largestComponent?: boolean } = {}): [number, number, number, number] | undefined {
  const over = new Uint8Array(g.data.length);
  for (let q = 0; q < over.length; q++) over[q] = g.data[q] >= zCut ? 1 : 0;
  if (o.largestComponent) keepLargestComponent(over, g.width, g.height);
  let x1 = Infinity, y1 = Infinity, x2 = -1, y2 = -1;
  for (let y = 0; y < g.height; y++) {
    for (let x = 0; x < g.width; x++) {
      if (!over[y * g.width + x]) continue;
      if (x < x1) x1 = x;
      if (x > x2) x2 = x;
      if (y < y1) y1 = y;
      if (y > y2) y2 = y;
    }
  }
  if (x2 < 0) return undefined;
  const m = margin > 0 ? Math.max(2, Math.round(margin * Math.max(width, height))) : 0;
  return [Math.max(0, x1 - m), Math.max(0, y1 - m), Math.min(width - 1, x2 + 1 + m), Math.min(height - 1, y2 + 1 + m)];
}
