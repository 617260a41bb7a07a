import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { chestLikePng } from '../helpers/fixtures.js';
import { ctSliceHu, rgbSecondaryCapture, xrayMonochrome1 } from '../helpers/dicom-fixtures.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';
import { ROOT } from '../helpers/project.js';
import { makeLabelledFolder, PHANTOM } from '../helpers/labelled-folder.js';

const run = promisify(execFile);
const CLI = path.join(ROOT, 'dist', 'main', 'cli.js');
const cli = async (args: string[], env: Record<string, string> = {}) => {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, PROMPTSEG_LOG_LEVEL: 'silent', ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
};

describe('promptseg CLI', () => {
  it('adapt teaches a structure from a labelled folder with a progress bar; segment then serves it; adapters list and remove it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-cli-adapt-'));
    const env = { PROMPTSEG_ADAPTERS_DIR: path.join(dir, 'adapters') };
    await makeLabelledFolder(path.join(dir, 'data'), { n: 5 });
    const bad = await cli(['adapt', path.join(dir, 'data'), '--structure', PHANTOM.slug, '--shots', '9'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/shots is 9, but the folder has 5 images/);
    const r = await cli(['adapt', path.join(dir, 'data'), '--structure', PHANTOM.slug, '--shots', '3', '--seed', '4', '--name', 'cli insert'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[#+\] \d+\/\d+ ETA \d+s fitting head \d of 3/);
    const made = JSON.parse(r.stdout) as { id: string; k: number; name: string; calibrated_on: string };
    expect(made).toMatchObject({ k: 3, name: 'cli insert', calibrated_on: 'none' });
    const seg = await cli(['segment', path.join(dir, 'data', 'images', 'case04.png'), '--prompt', 'cli insert', '--out', path.join(dir, 'out')], env);
    expect(seg.code).toBe(0);
    const [res] = JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8')) as { results: { adapter: string; reasons: { code: string }[] }[] }[];
    expect(res.results[0].adapter).toBe(made.id);
    expect(res.results[0].reasons.map((x) => x.code)).toContain('adapter_not_calibrated');
    expect(JSON.parse((await cli(['adapters', 'list'], env)).stdout).adapters[0].id).toBe(made.id);
    expect((await cli(['adapters', 'remove', made.id], env)).code).toBe(0);
    expect(JSON.parse((await cli(['adapters', 'list'], env)).stdout).adapters).toEqual([]);
  }, 120_000);

  it('segment writes a mask PNG per image and prompt and a JSON summary, with a progress bar for several images', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-cli-'));
    const inDir = path.join(dir, 'in');
    const out = path.join(dir, 'out');
    await import('node:fs/promises').then((fs) => fs.mkdir(inDir));
    writeFileSync(path.join(inDir, 'a.png'), await chestLikePng(128));
    writeFileSync(path.join(inDir, 'b.png'), await chestLikePng(96));
    writeFileSync(path.join(inDir, 'ct.dcm'), ctSliceHu(128, 0.5).bytes);
    writeFileSync(path.join(inDir, 'xr.dcm'), xrayMonochrome1(96).bytes);
    writeFileSync(path.join(inDir, 'sc.dcm'), rgbSecondaryCapture(80, 64).bytes);
    writeFileSync(path.join(inDir, 'vol.nii.gz'), niftiVolume([48, 40, 3], [0.9, 0.9, 2.5], { gzip: true }).bytes);
    const r = await cli(['segment', inDir, '--prompt', 'lungs', '--prompt', 'heart', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[#+\] 6\/6/);
    const files = readdirSync(out).sort();
    expect(files).toContain('summary.json');
    expect(files.filter((f) => f.endsWith('.png'))).toHaveLength(10);
    expect(files.filter((f) => f.endsWith('.nii.gz')).sort()).toEqual(['vol__heart.nii.gz', 'vol__lungs.nii.gz']);
    const meta = await sharp(path.join(out, 'b__lungs.png')).metadata();
    expect([meta.width, meta.height]).toEqual([96, 96]);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { file: string; results: { area_px: number; area_mm2: number | null }[] }[];
    const ct = summary.find((s) => s.file.endsWith('ct.dcm'))!;
    for (const res of ct.results) expect(res.area_mm2).toBeCloseTo(res.area_px * 0.25, 3);
  });

  it('exits 2 with a usage message for bad arguments and 1 with a reason when every image fails', async () => {
    expect((await cli([])).code).toBe(2);
    const noPrompt = await cli(['segment', 'x.png']);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toMatch(/--prompt/);
    expect((await cli(['frobnicate'])).code).toBe(2);
    const badTta = await cli(['eval', 'eval/suites/shared-quick.json', '--tta-image', 'sometimes']);
    expect(badTta.code).toBe(2);
    expect(badTta.stderr).toMatch(/--tta-image is a whole number from 0 to 12, or auto/);
    expect((await cli(['segment', '/no/such/file.png', '--prompt', 'heart'])).code).toBe(2);
    const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-cli-'));
    const bad = path.join(dir, 'bad.png');
    writeFileSync(bad, 'not an image');
    const r = await cli(['segment', bad, '--prompt', 'heart', '--out', path.join(dir, 'o')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a DICOM, NIfTI, PNG, JPEG/);
  });

  it('lists models and structures as JSON', async () => {
    const m = await cli(['models', 'list']);
    expect(m.code).toBe(0);
    expect(JSON.parse(m.stdout).default).toBe('promptseg-builtin');
    const s = await cli(['structures', 'list', '--modality', 'mri']);
    expect(JSON.parse(s.stdout).structures.map((x: { slug: string }) => x.slug)).toContain('left_ventricle');
  });
});
