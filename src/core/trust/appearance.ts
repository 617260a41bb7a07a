import type { RasterImage } from '../image/raster.js';

const SIDE = 128;
const GRAD_EDGES = [1, 2, 4, 8, 16, 32, 64];
const LAPLACE_EDGES = [0.5, 1, 2, 4, 8];

/** Which of 8 equal hue sectors (0 = red, going through yellow, green, cyan, blue, magenta) a colour falls in. */
function hueBin(r: number, g: number, b: number): number {
  const max = Math.max(r, g, b), min = Math.min(r, g, b), d = max - min;
  let h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  if (h < 0) h += 6;
  return Math.min(7, Math.floor((h / 6) * 8));
}

/**
 * A 50-number summary of how an image looks, independent of any model: grey-level histogram (16),
 * saturation histogram (6), gradient-magnitude histogram (8), shares of pure black and pure white,
 * mean and spread of brightness, colourfulness, the share of perfectly flat pixels, and a
 * histogram of the Laplacian's magnitude (6: texture and noise, which smooth synthetic images lack),
 * and a hue histogram weighted by saturation (8: medical colour images are pink, red, brown or
 * purple; greens and blues are rare). Out-of-distribution scoring compares it with training images (k nearest neighbours),
 * which catches what a segmentation network's pooled features can miss: smooth gradients, text
 * pages, flat synthetic scenes.
 */
export function appearanceDescriptor(img: RasterImage): Float32Array {
  const scale = Math.min(1, SIDE / Math.max(img.width, img.height));
  const w = Math.max(1, Math.round(img.width * scale)), h = Math.max(1, Math.round(img.height * scale));
  const lum = new Float32Array(w * h);
  const out = new Float32Array(50);
  let sum = 0, sum2 = 0, rg = 0, yb = 0, black = 0, white = 0;
  for (let y = 0; y < h; y++) {
    const sy = Math.min(img.height - 1, Math.floor((y + 0.5) / scale));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(img.width - 1, Math.floor((x + 0.5) / scale));
      const o = (sy * img.width + sx) * 3;
      const r = img.data[o], g = img.data[o + 1], b = img.data[o + 2];
      const l = 0.299 * r + 0.587 * g + 0.114 * b;
      lum[y * w + x] = l;
      out[Math.min(15, Math.floor(l / 16))] += 1;
      const sat = (Math.max(r, g, b) - Math.min(r, g, b)) / 255;
      out[16 + Math.min(5, Math.floor(sat * 6))] += 1;
      sum += l;
      sum2 += l * l;
      rg += Math.abs(r - g);
      if (sat > 0) out[42 + hueBin(r, g, b)] += sat;
      yb += Math.abs((r + g) / 2 - b);
      if (l < 8) black++;
      if (l > 247) white++;
    }
  }
  const n = w * h;
  for (let i = 0; i < 22; i++) out[i] /= n;
  for (let i = 42; i < 50; i++) out[i] /= n;
  let flat = 0, m = 0;
  for (let y = 0; y + 1 < h; y++) {
    for (let x = 0; x + 1 < w; x++) {
      const i = y * w + x;
      const dx = lum[i + 1] - lum[i], dy = lum[i + w] - lum[i];
      const g = Math.abs(dx) + Math.abs(dy);
      let bin = 0;
      while (bin < GRAD_EDGES.length && g >= GRAD_EDGES[bin]) bin++;
      out[22 + bin] += 1;
      if (g < 0.5) flat++;
      m++;
    }
  }
  for (let i = 22; i < 30; i++) out[i] /= Math.max(1, m);
  let lm = 0;
  for (let y = 1; y + 1 < h; y++) {
    for (let x = 1; x + 1 < w; x++) {
      const i = y * w + x;
      const lap = Math.abs(4 * lum[i] - lum[i - 1] - lum[i + 1] - lum[i - w] - lum[i + w]);
      let bin = 0;
      while (bin < LAPLACE_EDGES.length && lap >= LAPLACE_EDGES[bin]) bin++;
      out[36 + bin] += 1;
      lm++;
    }
  }
  for (let i = 36; i < 42; i++) out[i] /= Math.max(1, lm);
  const mean = sum / n;
  out[30] = black / n;
  out[31] = white / n;
  out[32] = mean / 255;
  out[33] = Math.sqrt(Math.max(0, sum2 / n - mean * mean)) / 255;
  out[34] = (rg / n / 255 + yb / n / 255) / 2;
  out[35] = flat / Math.max(1, m);
  return out;
}
