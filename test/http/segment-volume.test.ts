import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as nifti from 'nifti-reader-js';
import { gunzipSync } from 'node:zlib';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { testConfig } from '../helpers/service.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';
import { greyPng } from '../helpers/fixtures.js';

let srv: RunningServer;
beforeAll(async () => {
  srv = await startServer(testConfig(), { log: false });
});
afterAll(() => srv.close());

const postJson = (path: string, body: object) => fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('NIfTI volumes', () => {
  it('segments a volume slice by slice and returns a NIfTI mask with the input affine and dims', async () => {
    const vol = niftiVolume([64, 48, 5], [0.8, 0.8, 3.0], { gzip: true });
    const res = await postJson('/v1/segment-volume', { image: { base64: vol.bytes.toString('base64') }, prompts: ['liver', 'banana'] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { dims: number[]; spacing_mm: number[]; results: { voxels: number; volume_mm3: number; mask_url: string; verdicts: Record<string, number> }[] };
    expect(body.dims).toEqual([64, 48, 5]);
    expect(body.spacing_mm.map((v) => Math.round(v * 100) / 100)).toEqual([0.8, 0.8, 3]);
    for (const r of body.results) {
      expect(r.volume_mm3).toBeCloseTo(r.voxels * 0.8 * 0.8 * 3.0, 1);
      expect(Object.values(r.verdicts).reduce((a, b) => a + b, 0)).toBe(5);
      const m = await fetch(srv.url + r.mask_url);
      expect(m.status).toBe(200);
      const ab = gunzipSync(Buffer.from(await m.arrayBuffer()));
      const buf = ab.buffer.slice(ab.byteOffset, ab.byteOffset + ab.byteLength) as ArrayBuffer;
      expect(nifti.isNIFTI1(buf)).toBe(true);
      const h = nifti.readHeader(buf);
      expect(h.dims.slice(1, 4)).toEqual([64, 48, 5]);
      expect(h.datatypeCode).toBe(2);
      expect(h.sform_code).toBe(1);
      for (let r0 = 0; r0 < 3; r0++) for (let c = 0; c < 4; c++) expect(h.affine[r0][c]).toBeCloseTo(vol.srow[r0][c], 4);
      const data = new Uint8Array(nifti.readImage(h, buf));
      expect(data.length).toBe(64 * 48 * 5);
      expect(data.reduce((s, v) => s + v, 0)).toBe(r.voxels);
    }
    const bad = await fetch(srv.url + body.results[0].mask_url.replace(/\d+\.nii\.gz$/, '0.nii'));
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { detail: string }).detail).toContain('<index>.nii.gz');
  });

  it('segments a 2D NIfTI through /v1/segment with areas in mm²', async () => {
    const img = niftiVolume([64, 64, 1], [0.5, 0.25, 1]);
    const res = await postJson('/v1/segment', { image: { base64: img.bytes.toString('base64') }, prompts: ['skin lesion'] });
    expect(res.status).toBe(200);
    const r = ((await res.json()) as { results: { area_px: number; area_mm2: number }[] }).results[0];
    expect(r.area_mm2).toBeCloseTo(r.area_px * 0.125, 3);
  });

  it('refuses a 3D volume on /v1/segment, and 4D data, NIfTI-2, short data, bad slice ranges and a 2D image on /v1/segment-volume', async () => {
    const vol = niftiVolume([32, 32, 3], [1, 1, 1]);
    const a = await postJson('/v1/segment', { image: { base64: vol.bytes.toString('base64') }, prompts: ['liver'] });
    expect(a.status).toBe(422);
    expect(((await a.json()) as { detail: string }).detail).toContain('segment_volume');
    const four = Buffer.from(vol.bytes);
    four.writeInt16LE(4, 40);
    four.writeInt16LE(2, 48);
    expect((await postJson('/v1/segment-volume', { image: { base64: four.toString('base64') }, prompts: ['liver'] })).status).toBe(415);
    const short = vol.bytes.subarray(0, 352 + 100);
    const s = await postJson('/v1/segment-volume', { image: { base64: short.toString('base64') }, prompts: ['liver'] });
    expect(s.status).toBe(400);
    expect(((await s.json()) as { field: string }).field).toBe('vox_offset');
    const r = await postJson('/v1/segment-volume', { image: { base64: vol.bytes.toString('base64') }, prompts: ['liver'], slice_range: [2, 9] });
    expect(r.status).toBe(422);
    // storing a SEG on a server without a PACS is refused before any slice is segmented
    const st = await postJson('/v1/segment-volume', { image: { base64: vol.bytes.toString('base64') }, prompts: ['liver'], store_seg: true });
    expect(st.status).toBe(422);
    expect(((await st.json()) as { detail: string }).detail).toContain('store_seg needs a PACS');
    // a 2D image sent for a volume is named, and the operation for it given
    const png = await greyPng(16, 16, () => 128);
    const p = await postJson('/v1/segment-volume', { image: { base64: png.toString('base64') }, prompts: ['liver'] });
    expect(p.status).toBe(415);
    const pd = ((await p.json()) as { detail: string }).detail;
    expect(pd).toContain('a PNG image');
    expect(pd).toContain('POST /v1/segment');
  });
});
