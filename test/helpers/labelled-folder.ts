import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../src/core/stats.js';

export const PHANTOM = { slug: 'phantom_insert', name: 'phantom insert', synonyms: ['bright test insert'] };

/**
 * A labelled folder in the medseg2d layout, made by code: grey images with a textured background,
 * one bright disc (the structure, masked) and one dark disc (a distractor), at seeded places.
 */
export async function makeLabelledFolder(dir: string, o: { n?: number; width?: number; height?: number; seed?: number; splits?: { train: number; val: number }; slug?: string; name?: string } = {}): Promise<{ dir: string; cases: string[]; splits?: Record<string, string[]> }> {
  const n = o.n ?? 10, W = o.width ?? 160, H = o.height ?? 128;
  const rnd = seededRandom(o.seed ?? 3);
  const slug = o.slug ?? PHANTOM.slug, name = o.name ?? PHANTOM.name;
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  mkdirSync(path.join(dir, 'masks', slug), { recursive: true });
  const cases: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = `case${String(i).padStart(2, '0')}`;
    const r = 12 + rnd() * 10;
    const cx = r + 4 + rnd() * (W - 2 * r - 8), cy = r + 4 + rnd() * (H - 2 * r - 8);
    const dx = W - cx, dy = H - cy;
    const img = Buffer.alloc(W * H), mask = Buffer.alloc(W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
        const dark = (x - dx) ** 2 + (y - dy) ** 2 <= 100;
        img[y * W + x] = inside ? 200 + Math.floor(rnd() * 30) : dark ? 20 : 90 + Math.floor(30 * Math.sin(x / 9) * Math.cos(y / 7)) + Math.floor(rnd() * 20);
        mask[y * W + x] = inside ? 255 : 0;
      }
    }
    await sharp(img, { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(dir, 'images', `${c}.png`));
    await sharp(mask, { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(dir, 'masks', slug, `${c}.png`));
    cases.push(c);
  }
  writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify({ id: path.basename(dir), name: 'phantom discs', modality: 'phantom', structures: [{ slug, name, synonyms: slug === PHANTOM.slug ? PHANTOM.synonyms : [] }] }));
  if (!o.splits) return { dir, cases };
  const splits = { train: cases.slice(0, o.splits.train), val: cases.slice(o.splits.train, o.splits.train + o.splits.val), test: cases.slice(o.splits.train + o.splits.val) };
  writeFileSync(path.join(dir, 'splits.json'), JSON.stringify({ rule: 'made by code', ...splits }));
  return { dir, cases, splits };
}
