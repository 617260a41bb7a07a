/**
 * npm run bench:adapt: the few-shot target, measured as a user meets it: a labelled folder of
 * 512 x 512 images made by code (k support images in train, 10 in val), taught to the built-in model
 * by the same code `promptseg adapt` runs, timed from reading the folder to the adapter written.
 * Prints the seconds per stage and the total against the 2-minute goal for k = 10. Asserts nothing.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig } from '../config/env.js';
import { seededRandom } from '../core/stats.js';
import { adaptFromFolder, prepareAdaptation } from '../service/adapt-from-folder.js';
import { createServiceContext } from '../service/context.js';
import { machine } from './bench-helpers.js';

const k = Number(process.argv[2] ?? 10);
const size = 512;
const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-bench-adapt-'));
const folder = path.join(dir, 'data');
mkdirSync(path.join(folder, 'images'), { recursive: true });
mkdirSync(path.join(folder, 'masks', 'bench_lesion'), { recursive: true });
const rnd = seededRandom(5);
const cases: string[] = [];
for (let i = 0; i < k + 10; i++) {
  // a textured grey field with one brighter blob of irregular outline, as an ultrasound lesion might look
  const img = Buffer.alloc(size * size), mask = Buffer.alloc(size * size);
  const cx = 120 + rnd() * 272, cy = 120 + rnd() * 272, r = 40 + rnd() * 50;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const a = Math.atan2(y - cy, x - cx), d = Math.hypot(x - cx, y - cy) / (r * (1 + 0.15 * Math.sin(3 * a)));
      const inside = d <= 1;
      img[y * size + x] = Math.max(0, Math.min(255, (inside ? 150 : 90) + 25 * Math.sin(x / 11) * Math.cos(y / 13) + 40 * (rnd() - 0.5)));
      mask[y * size + x] = inside ? 255 : 0;
    }
  }
  const c = `case${i}`;
  await sharp(img, { raw: { width: size, height: size, channels: 1 } }).png().toFile(path.join(folder, 'images', `${c}.png`));
  await sharp(mask, { raw: { width: size, height: size, channels: 1 } }).png().toFile(path.join(folder, 'masks', 'bench_lesion', `${c}.png`));
  cases.push(c);
}
writeFileSync(path.join(folder, 'dataset.json'), JSON.stringify({ id: 'bench', name: 'bench lesions', modality: 'ultrasound', structures: [{ slug: 'bench_lesion', name: 'bench lesion', synonyms: [] }] }));
writeFileSync(path.join(folder, 'splits.json'), JSON.stringify({ train: cases.slice(0, k), val: cases.slice(k) }));

const ctx = createServiceContext(loadConfig({ ...process.env, PROMPTSEG_ADAPTERS_DIR: path.join(dir, 'adapters'), PROMPTSEG_LOG_LEVEL: 'silent' }));
await ctx.pipeline.registry.get().load();
const stages = new Map<string, number>();
let last = performance.now(), stage = '';
const t0 = performance.now();
const a = await adaptFromFolder(ctx, prepareAdaptation(ctx, { folder, structure: 'bench_lesion' }), (_d, _t, msg) => {
  const s = msg.startsWith('features') ? 'image features (support images and variants)' : msg.startsWith('fitting') ? 'fitting the head' : 'validation and calibration';
  if (s !== stage) {
    const now = performance.now();
    if (stage) stages.set(stage, (stages.get(stage) ?? 0) + (now - last) / 1000);
    stage = s;
    last = now;
  }
});
const total = (performance.now() - t0) / 1000;
stages.set(stage, (stages.get(stage) ?? 0) + (performance.now() - last) / 1000);
console.log(`machine: ${machine()}`);
console.log(`adapt k=${k} images of ${size} x ${size} px, 10 validation images: ${total.toFixed(1)} s in all (goal for k = 10: under 120 s)`);
for (const [s, v] of stages) console.log(`  ${s.padEnd(48)} ${v.toFixed(1)} s`);
console.log(`  validation Dice of the adapter ${a.file.validation?.dice_mean.toFixed(3)} (synthetic lesions)`);
rmSync(dir, { recursive: true, force: true });
