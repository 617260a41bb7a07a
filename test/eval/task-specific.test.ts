import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/core/image/decode.js';
import { segment } from '../../src/core/pipeline/segment.js';
import { bootstrapCi, dice, mean } from '../../src/core/stats.js';
import { evaluateTaskSpecific, summariseStructure, verdictOf, type PairedCase } from '../../src/eval/task-specific-suite.js';
import { MODELS_DIR } from '../helpers/project.js';
import { testContext } from '../helpers/service.js';

const pair = (g: number, t: number, area = 100, contrast = 0.5): PairedCase => ({ case: `c${g}-${t}`, area, contrast, generalist: { dice: g, hd95: 1, nsd: g }, task: { dice: t, hd95: 2, nsd: t } });

describe('the generalist against task-specific nets', () => {
  it('paired differences, their interval and the verdict, checked by hand', () => {
    // differences 0.1, 0, -0.1, -0.2: mean -0.05, an interval across 0: level
    const level = summariseStructure('d', 's', [pair(0.9, 0.8), pair(0.8, 0.8), pair(0.7, 0.8), pair(0.6, 0.8)], { bootstrap: 1000, seed: 7 });
    expect(level.difference.mean).toBeCloseTo(-0.05, 12);
    expect(level.generalist.dice).toBeCloseTo(0.75, 12);
    expect(level.task.dice).toBeCloseTo(0.8, 12);
    expect(level.difference.ci).toEqual(bootstrapCi([0.9 - 0.8, 0.8 - 0.8, 0.7 - 0.8, 0.6 - 0.8], 1000, 7));
    expect(level.verdict).toBe('level');
    // every case better by 0.05 to 0.15: ahead; every case worse: behind
    expect(summariseStructure('d', 's', [pair(0.9, 0.8), pair(0.85, 0.8), pair(0.95, 0.8)], { bootstrap: 1000, seed: 7 }).verdict).toBe('ahead');
    expect(summariseStructure('d', 's', [pair(0.5, 0.8), pair(0.6, 0.8), pair(0.55, 0.8)], { bootstrap: 1000, seed: 7 }).verdict).toBe('behind');
    expect([verdictOf([0.01, 0.2]), verdictOf([-0.3, -0.001]), verdictOf([-0.1, 0.1]), verdictOf([0, 0.1])]).toEqual(['ahead', 'behind', 'level', 'level']);
    // area quartiles: the small half worse for the generalist
    const sized = summariseStructure('d', 's', [pair(0.2, 0.6, 10), pair(0.3, 0.6, 20), pair(0.9, 0.9, 300), pair(0.95, 0.9, 400)], { bootstrap: 1000, seed: 7 });
    expect(sized.by_area.map((b) => [b.quartile, b.cases, b.generalist, b.task])).toEqual([[1, 1, 0.2, 0.6], [2, 1, 0.3, 0.6], [3, 1, 0.9, 0.9], [4, 1, 0.95, 0.9]]);
    expect(sized.generalist.hd95).toBe(1);
    expect(sized.task.nsd).toBeCloseTo(0.75, 12);
  });

  it('runs the built-in generalist and a tiny task net on a dataset made by code, with per-case figures checked by hand', async () => {
    // 64 x 64 images (the tiny net's input size: no resampling): a bright disc (220) and a dark disc
    // (30) on grey (110); the bright structure's label is the disc one pixel wider on odd cases
    const root = mkdtempSync(path.join(tmpdir(), 'promptseg-task-'));
    const data = path.join(root, 'data'), ds = path.join(data, 'tiny_task');
    for (const d of ['images', 'masks/bright', 'masks/dark']) mkdirSync(path.join(ds, d), { recursive: true });
    const cases: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = `case${i}`, S = 64;
      const bx = 18 + 3 * i, by = 22 + 2 * i, r = 7 + i, dx = 50, dy = 50 - i;
      const img = Buffer.alloc(S * S), bright = Buffer.alloc(S * S), dark = Buffer.alloc(S * S);
      for (let y = 0; y < S; y++) {
        for (let x = 0; x < S; x++) {
          const inB = (x - bx) ** 2 + (y - by) ** 2 <= r * r, inD = (x - dx) ** 2 + (y - dy) ** 2 <= 25;
          img[y * S + x] = inB ? 220 : inD ? 30 : 110;
          bright[y * S + x] = (x - bx) ** 2 + (y - by) ** 2 <= (r + (i % 2)) ** 2 ? 255 : 0;
          dark[y * S + x] = inD ? 255 : 0;
        }
      }
      const png = (b: Buffer, f: string) => sharp(b, { raw: { width: S, height: S, channels: 1 } }).png().toFile(f);
      await png(img, path.join(ds, 'images', `${c}.png`));
      await png(bright, path.join(ds, 'masks', 'bright', `${c}.png`));
      await png(dark, path.join(ds, 'masks', 'dark', `${c}.png`));
      cases.push(c);
    }
    writeFileSync(path.join(ds, 'dataset.json'), JSON.stringify({ id: 'tiny_task', modality: 'phantom', structures: [{ slug: 'bright', name: 'bright disc' }, { slug: 'dark', name: 'dark disc' }] }));
    writeFileSync(path.join(ds, 'splits.json'), JSON.stringify({ train: [], val: [], test: cases }));
    writeFileSync(path.join(data, 'index.json'), JSON.stringify([{ id: 'tiny_task' }, { id: 'no_net_here' }]));
    mkdirSync(path.join(data, 'no_net_here'));
    cpSync(path.join(MODELS_DIR, 'tiny', 'taskseg-tiny'), path.join(root, 'baselines', 'tiny_task'), { recursive: true });
    const suiteFile = path.join(root, 'suite.json');
    writeFileSync(suiteFile, JSON.stringify({ name: 'tiny', protocol: 'task-specific', data_root: 'data', baselines: 'baselines', records: 'records', bootstrap: 500, seed: 3 }));
    const ctx = testContext();
    const { files, rows } = await evaluateTaskSpecific(ctx, suiteFile, path.join(root, 'out'));
    expect(rows.map((r) => r.structure)).toEqual(['bright', 'dark']);
    const results = JSON.parse(readFileSync(files[0], 'utf8')) as { missing: string[] };
    expect(results.missing).toEqual(['no_net_here']);
    // by hand: the tiny net's bright channel is (mean - 128) / 8, dark (96 - mean) / 8: a mask of the pixels past the cut
    for (const [k, slug] of ['bright', 'dark'].entries()) {
      const g: number[] = [], t: number[] = [];
      for (const c of cases) {
        const image = await decodeImage(readFileSync(path.join(ds, 'images', `${c}.png`)), { maxPixels: 1e6 });
        const gt = await decodeImage(readFileSync(path.join(ds, 'masks', slug, `${c}.png`)), { maxPixels: 1e6 });
        const truth = Uint8Array.from({ length: 64 * 64 }, (_, q) => (gt.data[q * 3] > 127 ? 1 : 0));
        const mine = Uint8Array.from({ length: 64 * 64 }, (_, q) => (slug === 'bright' ? image.data[q * 3] >= 128 : image.data[q * 3] <= 96) ? 1 : 0);
        t.push(dice(mine, truth));
        const served = await segment(ctx.pipeline, { image, prompts: ['bright disc', 'dark disc'] });
        g.push(dice(served.results[k].mask, truth));
      }
      const row = rows[k];
      expect(row.cases).toBe(6);
      expect(row.task.dice).toBeCloseTo(mean(t), 12);
      expect(row.generalist.dice).toBeCloseTo(mean(g), 12);
      const d = g.map((v, i) => v - t[i]);
      expect(row.difference.mean).toBeCloseTo(mean(d), 12);
      expect(row.difference.ci).toEqual(bootstrapCi(d, 500, 3));
      expect(row.verdict).toBe(verdictOf(bootstrapCi(d, 500, 3)));
    }
    // the bright label is wider than the disc on odd cases: the task net's Dice is below 1 there and 1 elsewhere
    expect(rows[0].task.dice).toBeLessThan(1);
    expect(rows[1].task.dice).toBe(1);
    const md = readFileSync(files[1], 'utf8');
    expect(md).toMatch(/Level with or ahead of the task-specific net on \d of 2 structures/);
    expect(md).toContain('No task-specific net for: no_net_here');
    expect(readFileSync(files[2], 'utf8')).toContain('<svg');
    expect(rows.map((r) => r.task_source)).toEqual(['net', 'net']);

    // the net's per-case scores were recorded: without the net, the generalist is re-run and paired with them
    const recordFile = path.join(root, 'records', 'tiny_task.json');
    const record = JSON.parse(readFileSync(recordFile, 'utf8')) as { cases: string[]; scores: Record<string, Record<string, { dice: number }>>; net: { onnx_sha256?: string } };
    expect(record.cases).toEqual(cases);
    expect(Object.keys(record.scores)).toEqual(cases); // both structures are present on every case
    expect(record.scores.case1.bright.dice).toBeLessThan(1);
    rmSync(path.join(root, 'baselines', 'tiny_task'), { recursive: true });
    const again = await evaluateTaskSpecific(ctx, suiteFile, path.join(root, 'out'));
    expect(again.rows.map((r) => r.task_source)).toEqual(['record', 'record']);
    for (const [k, r] of again.rows.entries()) {
      expect(r.difference).toEqual(rows[k].difference);
      expect(r.task.dice).toBe(rows[k].task.dice);
      expect(r.generalist_fingerprint).toBe(rows[k].generalist_fingerprint);
    }
    expect(readFileSync(again.files[1], 'utf8')).toContain('paired through their recorded per-case scores (records/<dataset>.json): tiny_task.');

    // a record that lacks a case of the suite is refused, naming the file and the case
    const cut = { ...record, cases: cases.slice(1) };
    writeFileSync(recordFile, JSON.stringify(cut));
    await expect(evaluateTaskSpecific(ctx, suiteFile, path.join(root, 'out'))).rejects.toThrow(/tiny_task\.json has no scores for 1 case\(s\) of the suite \(case0\)/);

    // neither the net nor its record: the earlier run's rows are kept, and said to be
    rmSync(recordFile);
    const kept = await evaluateTaskSpecific(ctx, suiteFile, path.join(root, 'out'));
    expect(kept.rows.map((r) => r.task_source)).toEqual(['earlier run', 'earlier run']);
    expect(kept.rows.map((r) => r.difference)).toEqual(rows.map((r) => r.difference));
    expect(readFileSync(kept.files[1], 'utf8')).toContain('Rows kept from an earlier run of this suite (neither the net nor its recorded scores here; retrain the net to re-pair them): tiny_task.');
    expect(existsSync(path.join(root, 'out', 'results.json'))).toBe(true);
  }, 90_000);
});
