import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { spawnSync } from 'node:child_process';
import dicomParser from 'dicom-parser';
import dcmjs from 'dcmjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { ctSeries, zipOf } from '../helpers/dicom-fixtures.js';
import { testConfig } from '../helpers/service.js';

const noValidator = spawnSync('dciodvfy', ['-h']).error !== undefined;
const root = mkdtempSync(path.join(tmpdir(), 'promptseg-series-'));
let srv: RunningServer;

/** Writes files into a new folder under the root. */
function folder(name: string, files: { name: string; bytes: Buffer }[]): string {
  const dir = path.join(root, name);
  mkdirSync(dir);
  for (const f of files) writeFileSync(path.join(dir, f.name), f.bytes);
  return dir;
}
const post = (route: string, body: unknown) => fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

beforeAll(async () => {
  srv = await startServer(testConfig({ PROMPTSEG_ALLOWED_ROOTS: root }), { log: false });
  await srv.ctx.pipeline.registry.get().load();
});
afterAll(async () => {
  await srv.close();
  rmSync(root, { recursive: true, force: true });
});

describe('a DICOM series (a folder) as a volume', () => {
  it('stacks the slices by position along the normal, not by name or instance number; masks land in the right voxels with the DICOM geometry', { timeout: 60_000 }, async () => {
    const s = ctSeries(5, 64, 2.5);
    const dir = folder('ct', s.files);
    const res = await post('/v1/segment-volume', { image: { path: dir }, prompts: ['lungs'] });
    expect(res.status).toBe(200);
    const out = (await res.json()) as { dims: number[]; spacing_mm: number[]; results: { voxels: number; slices_present: number[]; mask_url: string }[] };
    expect(out.dims).toEqual([64, 64, 5]);
    expect(out.spacing_mm.map((v) => Math.round(v * 100) / 100)).toEqual([0.7, 0.7, 2.5]);
    const gz = Buffer.from(await (await fetch(`${srv.url}${out.results[0].mask_url}`)).arrayBuffer());
    const raw = gunzipSync(gz);
    const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length) as ArrayBuffer;
    const h = nifti.readHeader(ab) as nifti.NIFTI1;
    // voxel (i, j, k) -> RAS: DICOM's LPS with x and y negated, origin at the first slice's position
    expect(h.affine[0].map((v) => Math.round(v * 100) / 100 || 0)).toEqual([-0.7, 0, 0, 22.4]);
    expect(h.affine[1].map((v) => Math.round(v * 100) / 100 || 0)).toEqual([0, -0.7, 0, 22.4]);
    expect(h.affine[2].map((v) => Math.round(v * 100) / 100 || 0)).toEqual([0, 0, 2.5, -20]);
    const vox = raw.subarray(352);
    // each slice k of the volume is the 2D segmentation of the file at the k-th position, pixel for pixel
    const byZ = [...s.files].sort((a, b) => a.z - b.z);
    for (let k = 0; k < 5; k++) {
      const two = (await (await post('/v1/segment', { image: { base64: byZ[k].bytes.toString('base64') }, prompts: ['lungs'] })).json()) as { results: { mask_url: string; area_px: number }[] };
      const png = await sharp(Buffer.from(await (await fetch(`${srv.url}${two.results[0].mask_url}`)).arrayBuffer())).extractChannel(0).raw().toBuffer();
      const plane = vox.subarray(k * 64 * 64, (k + 1) * 64 * 64);
      let same = 0;
      for (let j = 0; j < 64; j++) for (let i = 0; i < 64; i++) if ((plane[j * 64 + i] > 0) === (png[j * 64 + i] > 127)) same++;
      expect(same).toBe(64 * 64);
      expect(plane.reduce((a, b) => a + b, 0)).toBe(two.results[0].area_px);
    }
    expect(out.results[0].voxels).toBeGreaterThan(0);

    // the DICOM SEG: a frame per slice where the lungs were found, each on its instance and position,
    // with the NIfTI mask's voxels; dciodvfy finds no error
    const segUrl = (out as unknown as { dicom_seg_url: string }).dicom_seg_url;
    for (const anonymize of [false, true]) {
      const seg = Buffer.from(await (await fetch(`${srv.url}${segUrl}${anonymize ? '?anonymize=true' : ''}`)).arrayBuffer());
      const ds = dicomParser.parseDicom(new Uint8Array(seg));
      const frames = ds.elements.x52009230.items!.map((it) => it.dataSet!);
      const present = [0, 1, 2, 3, 4].filter((k) => vox.subarray(k * 4096, (k + 1) * 4096).some((v) => v));
      expect(frames.length).toBe(present.length);
      const refs = ds.elements.x00081115.items![0].dataSet!.elements.x0008114a.items!.map((it) => it.dataSet!.string('x00081155'));
      expect(refs.length).toBe(5);
      const px = ds.elements.x7fe00010;
      const bits = new Uint8Array(seg.buffer, seg.byteOffset + px.dataOffset, px.length);
      frames.forEach((f, n) => {
        const k = present[n];
        const fc = f.elements.x00209111.items![0].dataSet!;
        expect([fc.uint32('x00209157', 0), fc.uint32('x00209157', 1)]).toEqual([1, k + 1]);
        const pos = f.elements.x00209113.items![0].dataSet!.string('x00200032')!.split('\\').map(Number);
        expect(pos[2]).toBeCloseTo(byZ[k].z, 3);
        for (let q = 0; q < 4096; q++) {
          const bit = n * 4096 + q;
          expect((bits[bit >> 3] >> (bit & 7)) & 1).toBe(vox[k * 4096 + q] ? 1 : 0);
        }
      });
      // dcmjs reads the same frames back
      const d = (dcmjs as unknown as { data: { DicomMessage: { readFile(b: ArrayBuffer): { dict: object } }; DicomMetaDictionary: { naturalizeDataset(d: object): Record<string, unknown> } } }).data;
      const nat = d.DicomMetaDictionary.naturalizeDataset(d.DicomMessage.readFile(seg.buffer.slice(seg.byteOffset, seg.byteOffset + seg.byteLength)).dict);
      expect(nat.NumberOfFrames).toBe(present.length);
      expect(Buffer.from((nat.PixelData as ArrayBuffer[])[0]).equals(Buffer.from(bits))).toBe(true);
      if (!noValidator) {
        const file = path.join(root, `series-seg-${anonymize}.dcm`);
        writeFileSync(file, seg);
        const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
        expect(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.startsWith('Error'))).toEqual([]);
      }
    }
  });

  it('reads the same series from a zip archive (base64), and refuses an archive that inflates past what it declares', { timeout: 60_000 }, async () => {
    const s = ctSeries(4, 48, 2.5);
    const zip = zipOf([...s.files, { name: 'series/.DS_Store', bytes: Buffer.from('x') }].map((f) => ({ name: f.name.startsWith('series/') ? f.name : `series/${f.name}`, bytes: f.bytes })));
    const r = await post('/v1/segment-volume', { image: { base64: zip.toString('base64') }, prompts: ['lungs'] });
    expect(r.status).toBe(200);
    const out = (await r.json()) as { dims: number[]; spacing_mm: number[]; dicom_seg_url?: string };
    expect(out.dims).toEqual([48, 48, 4]);
    expect(out.spacing_mm[2]).toBeCloseTo(2.5, 5);
    // the same archive with one entry declaring 100 bytes: yauzl stops it at the lie
    const liar = zipOf(s.files, { [s.files[0].name]: 100 });
    const bomb = await post('/v1/segment-volume', { image: { base64: liar.toString('base64') }, prompts: ['lungs'] });
    expect(bomb.status).toBe(400);
    expect(((await bomb.json()) as { detail: string }).detail).toMatch(/larger than it declares|corrupt/);
  });

  it('reads a series uploaded as a zip in the multipart field image (with repeated prompt fields and a slice range), and gives its SEG', { timeout: 60_000 }, async () => {
    const s = ctSeries(4, 48, 2.5);
    const form = new FormData();
    form.append('image', new Blob([zipOf(s.files)], { type: 'application/zip' }), 'series.zip');
    form.append('prompt', 'lungs');
    form.append('prompt', 'heart');
    form.append('slice_range', '1,2');
    const r = await fetch(`${srv.url}/v1/segment-volume`, { method: 'POST', body: form });
    expect(r.status).toBe(200);
    const out = (await r.json()) as { dims: number[]; slices: number[]; results: { prompt: string }[]; dicom_seg_url?: string };
    expect(out.dims).toEqual([48, 48, 4]);
    expect(out.slices).toEqual([1, 2]);
    expect(out.results.map((x) => x.prompt)).toEqual(['lungs', 'heart']);
    expect(out.dicom_seg_url).toBeDefined();
    expect((await fetch(`${srv.url}${out.dicom_seg_url}`)).status).toBe(200);
    // a form without the file is refused naming the field
    const empty = new FormData();
    empty.append('prompt', 'lungs');
    const bad = await fetch(`${srv.url}/v1/segment-volume`, { method: 'POST', body: empty });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { detail: string }).detail).toMatch(/no image file \(field "image"\)/);
  });

  it('refuses mixed series, two slices at one position, a missing slice and a changed orientation, naming the files', async () => {
    const a = ctSeries(4), b = ctSeries(2);
    const problems: [string, { name: string; bytes: Buffer }[], RegExp][] = [
      ['mixed', [...a.files, { ...b.files[0], name: 'other.dcm' }], /belong to 2 series/],
      ['dup', ctSeries(3, 32, 2.5, { positions: [0, 2.5, 2.5] }).files, /lie at the same position/],
      ['gap', ctSeries(4, 32, 2.5, { positions: [0, 2.5, 5, 10] }).files, /not evenly spaced: 5\.00 mm .* where the others are 2\.50 mm apart/],
    ];
    for (const [name, files, re] of problems) {
      const r = await post('/v1/segment-volume', { image: { path: folder(name, files) }, prompts: ['lungs'] });
      expect(r.status, name).toBe(422);
      expect(((await r.json()) as { detail: string }).detail).toMatch(re);
    }
    const straight = ctSeries(3, 32);
    const odd = ctSeries(1, 32, 2.5, { orientation: [1, 0, 0, 0, 0.8, 0.6], positions: [7.5], seriesUid: straight.seriesUid }).files[0];
    const r = await post('/v1/segment-volume', { image: { path: folder('tilt', [...straight.files, { ...odd, name: 'tilted.dcm' }]) }, prompts: ['lungs'] });
    expect(r.status).toBe(422);
    expect(((await r.json()) as { detail: string }).detail).toMatch(/tilted\.dcm has another orientation/);
    // a folder outside the roots reads like any refused path
    const outside = await post('/v1/segment-volume', { image: { path: tmpdir() }, prompts: ['lungs'] });
    expect(outside.status).toBe(422);
  });
});
