import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { evaluateFewShot } from '../../src/eval/few-shot-suite.js';
import { makeLabelledFolder } from '../helpers/labelled-folder.js';
import { testContext } from '../helpers/service.js';

describe('the few-shot protocol', () => {
  it('keeps two structures of one dataset apart (zero-shot, adapters, bars), adapts by the suite\'s recipe and reuses its runs on a rerun', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'promptseg-fewshot-'));
    const ds = path.join(root, 'data', 'two_structures');
    mkdirSync(ds, { recursive: true });
    const { cases } = await makeLabelledFolder(ds, { n: 9, width: 96, height: 80, splits: { train: 3, val: 3 } });
    // a second structure of the same images: everything but the bright disc
    mkdirSync(path.join(ds, 'masks', 'surround'), { recursive: true });
    for (const c of cases) {
      const { data, info } = await sharp(path.join(ds, 'masks', 'phantom_insert', `${c}.png`)).greyscale().raw().toBuffer({ resolveWithObject: true });
      await sharp(Buffer.from(Uint8Array.from(data, (v) => (v > 127 ? 0 : 255))), { raw: { width: info.width, height: info.height, channels: 1 } }).png().toFile(path.join(ds, 'masks', 'surround', `${c}.png`));
    }
    const meta = JSON.parse(readFileSync(path.join(ds, 'dataset.json'), 'utf8'));
    meta.structures.push({ slug: 'surround', name: 'surround', synonyms: [] });
    writeFileSync(path.join(ds, 'dataset.json'), JSON.stringify(meta));
    const suiteFile = path.join(root, 'suite.json');
    writeFileSync(
      suiteFile,
      JSON.stringify({
        name: 'two structures',
        protocol: 'few-shot',
        datasets: [
          { data_root: 'data', id: 'two_structures', structure: 'phantom_insert', zero_shot_prompt: 'phantom insert', role: 'unseen' },
          { data_root: 'data', id: 'two_structures', structure: 'surround', zero_shot_prompt: 'left lung', role: 'unseen' },
        ],
        ks: ['all'],
        draws: 1,
        adaptation: { grid: 64 },
        bars: [{ dataset: 'two_structures', structure: 'surround', k: 'all', min_dice: 0.5 }],
      }),
    );
    const ctx = testContext();
    const out = path.join(root, 'out');
    const said: string[] = [];
    await evaluateFewShot(ctx, suiteFile, out, (m) => said.push(m));
    const first = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(first.table.map((t: { structure: string }) => t.structure)).toEqual(['phantom_insert', 'surround']);
    expect(first.table.map((t: { zero_shot: { prompt: string } }) => t.zero_shot.prompt)).toEqual(['phantom insert', 'left lung']);
    expect(first.runs.map((r: { structure: string }) => r.structure)).toEqual(['phantom_insert', 'surround']);
    // the suite's change to the recipe is the recipe recorded (and the one a rerun must match to reuse a run)
    expect(JSON.parse(first.adapter_recipe)).toMatchObject({ grid: 64, hidden: 16, heads: 3 });
    // each structure's adapter is scored against its own masks: the surround covers most of each image
    const [insert, surround] = first.runs.map((r: { test_dice_mean: number }) => r.test_dice_mean);
    expect(surround).toBeGreaterThan(0.9);
    expect(surround).not.toBeCloseTo(insert, 6);
    expect(first.bars).toEqual([expect.objectContaining({ structure: 'surround', few_shot: surround, met: true })]);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('| two_structures / surround k=all Dice >= 0.5 |');
    // a rerun with the same model, recipe and support images adapts nothing again
    said.length = 0;
    await evaluateFewShot(ctx, suiteFile, out, (m) => said.push(m));
    expect(said.filter((m) => /draw \d+: test Dice/.test(m))).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')).runs).toEqual(first.runs);
  }, 240_000);
});
