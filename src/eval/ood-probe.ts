import sharp from 'sharp';
import { seededRandom } from './metrics.js';

/** One made-up image that is not a medical image of any kind the models were trained on. */
export interface ProbeImage {
  kind: 'noise' | 'gradient' | 'pattern' | 'text' | 'scene';
  png: Buffer;
}

function grey(width: number, height: number, f: (x: number, y: number) => number): Promise<Buffer> {
  const px = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px[y * width + x] = Math.max(0, Math.min(255, Math.round(f(x, y))));
  return sharp(px, { raw: { width, height, channels: 1 } }).png().toBuffer();
}

function rgb(width: number, height: number, f: (x: number, y: number) => [number, number, number]): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.set(f(x, y).map((v) => Math.max(0, Math.min(255, Math.round(v)))), (y * width + x) * 3);
  return sharp(px, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

const WORDS = ['invoice', 'meeting', 'notes', 'quarterly', 'report', 'hello', 'world', 'lorem', 'ipsum', 'dolor', 'table', 'chapter', 'summary', 'total', 'price', 'weather'];

/**
 * The out-of-distribution probe of the trust issue: non-medical images made by code, `perKind` of
 * each kind (white and smooth noise, colour and grey gradients, stripes and checkerboards,
 * rendered text pages, outdoor-like scenes with text). Deterministic for a seed.
 */
export async function nonMedicalImages(perKind = 8, seed = 3): Promise<ProbeImage[]> {
  const rnd = seededRandom(seed);
  const out: ProbeImage[] = [];
  for (let k = 0; k < perKind; k++) {
    if (k % 2 === 0) out.push({ kind: 'noise', png: await grey(256, 256, () => rnd() * 255) });
    else {
      const f = 0.02 + rnd() * 0.08, g = 0.02 + rnd() * 0.08, p = rnd() * 6;
      out.push({ kind: 'noise', png: await rgb(288, 224, (x, y) => [128 + 90 * Math.sin(x * f + p) * Math.cos(y * g), 128 + 90 * Math.sin(y * f * 1.3), 128 + 60 * Math.cos((x + y) * g) + 30 * rnd()]) });
    }
  }
  for (let k = 0; k < perKind; k++) {
    const c1 = [rnd() * 255, rnd() * 255, rnd() * 255], c2 = [rnd() * 255, rnd() * 255, rnd() * 255];
    const radial = k % 2 === 1;
    out.push({
      kind: 'gradient',
      png: await rgb(300, 220, (x, y) => {
        const t = radial ? Math.min(1, Math.hypot(x - 150, y - 110) / 150) : (x / 300 + y / 220) / 2;
        return [c1[0] + (c2[0] - c1[0]) * t, c1[1] + (c2[1] - c1[1]) * t, c1[2] + (c2[2] - c1[2]) * t];
      }),
    });
  }
  for (let k = 0; k < perKind; k++) {
    if (k % 2 === 0) {
      const a = rnd() * 6.28, period = 8 + k * 4;
      out.push({ kind: 'pattern', png: await grey(320, 240, (x, y) => 128 + 120 * Math.sin((x * Math.cos(a) + y * Math.sin(a)) / period)) });
    } else {
      const n = 4 + k * 3;
      out.push({ kind: 'pattern', png: await grey(256, 256, (x, y) => ((Math.floor(x / n) + Math.floor(y / n)) % 2 ? 230 : 20)) });
    }
  }
  for (let k = 0; k < perKind; k++) {
    const lines = Array.from({ length: 9 }, (_, i) => Array.from({ length: 4 }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ') + (i === 0 ? ` ${k}` : ''));
    const dark = k % 3 === 2;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="360" height="300"><rect width="100%" height="100%" fill="${dark ? '#202020' : '#fbfbf5'}"/>${lines.map((l, i) => `<text x="16" y="${34 + i * 30}" font-family="sans-serif" font-size="${i === 0 ? 24 : 18}" fill="${dark ? '#e0e0e0' : '#111111'}">${l}</text>`).join('')}</svg>`;
    out.push({ kind: 'text', png: await sharp(Buffer.from(svg)).png().toBuffer() });
  }
  for (let k = 0; k < perKind; k++) {
    const sky = ['#87ceeb', '#ffb347', '#4a6fa5', '#c0d6e4'][k % 4], ground = ['#2e8b57', '#c2b280', '#556b2f', '#8b7d6b'][k % 4];
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200"><rect width="100%" height="100%" fill="${sky}"/><rect y="${110 + (k % 5) * 10}" width="100%" height="200" fill="${ground}"/><circle cx="${50 + (k * 37) % 220}" cy="45" r="${18 + (k % 3) * 6}" fill="#ffd700"/><rect x="${140 + (k * 13) % 80}" y="${70 + (k % 4) * 8}" width="${50 + (k % 3) * 15}" height="50" fill="#b22222"/><polygon points="${140 + (k * 13) % 80},${70 + (k % 4) * 8} ${165 + (k * 13) % 80},${45 + (k % 4) * 8} ${190 + (k * 13) % 80 + (k % 3) * 15},${70 + (k % 4) * 8}" fill="#5b3a29"/><text x="10" y="190" font-family="sans-serif" font-size="24" fill="white">scene ${k}</text></svg>`;
    out.push({ kind: 'scene', png: await sharp(Buffer.from(svg)).png().toBuffer() });
  }
  return out;
}
