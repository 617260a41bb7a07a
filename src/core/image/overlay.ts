import sharp from 'sharp';
import { yieldTurn } from '../pipeline/cancel.js';
import type { RasterImage } from './raster.js';
import { resizeRgb } from './resize.js';

/** One colour per prompt, distinguishable on grey medical images. */
export const PROMPT_COLOURS: [number, number, number][] = [
  [255, 64, 64], [64, 200, 255], [255, 200, 0], [120, 255, 120], [255, 80, 255], [255, 140, 40], [160, 120, 255], [0, 255, 200],
];

/**
 * A preview PNG: the image with each mask tinted in its prompt's colour and its edge drawn solid,
 * scaled so the longer side is at most maxSide pixels.
 */
export async function renderOverlay(image: RasterImage, masks: Uint8Array[], maxSide = 512): Promise<Buffer> {
  const { width, height } = image;
  const px = Uint8Array.from(image.data);
  for (const [k, m] of masks.entries()) {
    await yieldTurn(); // a full-image pass per mask
    const [r, g, b] = PROMPT_COLOURS[k % PROMPT_COLOURS.length];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!m[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 || !m[i - 1] || !m[i + 1] || !m[i - width] || !m[i + width];
        const a = edge ? 1 : 0.4;
        px[i * 3] = Math.round(px[i * 3] * (1 - a) + r * a);
        px[i * 3 + 1] = Math.round(px[i * 3 + 1] * (1 - a) + g * a);
        px[i * 3 + 2] = Math.round(px[i * 3 + 2] * (1 - a) + b * a);
      }
    }
  }
  const s = Math.min(1, maxSide / Math.max(width, height));
  const w = Math.max(1, Math.round(width * s)), h = Math.max(1, Math.round(height * s));
  const out = s < 1 ? resizeRgb({ width, height, data: px, format: 'raw' }, w, h) : px;
  return sharp(Buffer.from(out.buffer, out.byteOffset, out.byteLength), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}
