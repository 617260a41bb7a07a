import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { ctSeries } from '../helpers/dicom-fixtures.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';
import { testConfig } from '../helpers/service.js';
import { ROOT } from '../helpers/project.js';
import { noRedis, TestRedis } from '../helpers/redis.js';

/** Orthanc and its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb; .ci/run installs them). */
const PLUGIN = ['/usr/share/orthanc/plugins/libOrthancDicomWeb.so', '/usr/lib/orthanc/libOrthancDicomWeb.so'].find((p) => existsSync(p));
const noOrthanc = spawnSync('Orthanc', ['--version']).error !== undefined ? 'Orthanc is not installed (Debian package orthanc)' : !PLUGIN ? 'the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)' : undefined;

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-orthanc-'));
let orthanc: ChildProcess | undefined;
let pacs = '';
let srv: RunningServer;
const series = ctSeries(5, 64, 2.5);

async function startOrthanc(): Promise<void> {
  const port = await freePort();
  const config = { Name: 'promptseg-test', StorageDirectory: path.join(dir, 'db'), IndexDirectory: path.join(dir, 'db'), HttpPort: port, DicomServerEnabled: false, RemoteAccessAllowed: false, AuthenticationEnabled: false, Plugins: [PLUGIN], DicomWeb: { Enable: true, Root: '/dicom-web/' } };
  writeFileSync(path.join(dir, 'orthanc.json'), JSON.stringify(config));
  orthanc = spawn('Orthanc', [path.join(dir, 'orthanc.json')], { stdio: 'ignore' });
  pacs = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${pacs}/system`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('Orthanc did not start');
}

const post = (route: string, body: unknown) => fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

beforeAll(async () => {
  if (noOrthanc) return;
  await startOrthanc();
  // the series goes into the PACS through Orthanc's own REST API, as a modality would send it
  for (const f of series.files) expect((await fetch(`${pacs}/instances`, { method: 'POST', body: f.bytes })).ok).toBe(true);
  srv = await startServer(testConfig({ PROMPTSEG_DICOMWEB_URL: `${pacs}/dicom-web`, PROMPTSEG_DICOMWEB_TIMEOUT_MS: '5000' }), { log: false });
}, 60_000);
afterAll(async () => {
  await srv?.close();
  orthanc?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(noOrthanc)(`a real PACS over DICOMweb (Orthanc)${noOrthanc ? `: skipped, ${noOrthanc}` : ''}`, () => {
  it('finds the series (QIDO-RS), segments it from the PACS (WADO-RS) and stores its SEG back (STOW-RS), which reads back from the PACS', async () => {
    const found = (await (await fetch(`${srv.url}/v1/pacs/series?modality=CT`)).json()) as { series: { study_uid: string; series_uid: string; modality: string; instances: number | null }[] };
    expect(found.series).toEqual([expect.objectContaining({ study_uid: series.studyUid, series_uid: series.seriesUid, modality: 'CT' })]);
    const r = await post('/v1/segment-volume', { image: { dicomweb: { study_uid: series.studyUid, series_uid: series.seriesUid } }, prompts: ['lungs'], store_seg: true });
    expect(r.status).toBe(200);
    const out = (await r.json()) as { dims: number[]; stored_in_pacs?: { instances: number }; dicom_seg_url: string; results: { slices_present: number[] }[] };
    expect(out.dims).toEqual([64, 64, 5]);
    expect(out.stored_in_pacs).toEqual({ instances: 1 });
    // the SEG is in the PACS now, in the same study, and references the source series
    const segs = (await (await fetch(`${srv.url}/v1/pacs/series?modality=SEG&study_uid=${series.studyUid}`)).json()) as { series: { series_uid: string }[] };
    expect(segs.series).toHaveLength(1);
    const wado = await fetch(`${pacs}/dicom-web/studies/${series.studyUid}/series/${segs.series[0].series_uid}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
    const body = new Uint8Array(await wado.arrayBuffer());
    const { multipartParts } = await import('../../src/service/dicomweb.js');
    const [seg] = multipartParts(body, wado.headers.get('content-type') ?? '');
    const ds = dicomParser.parseDicom(seg);
    expect(ds.string('x00080016')).toBe('1.2.840.10008.5.1.4.1.1.66.4');
    const frames = Number(ds.string('x00280008'));
    expect(frames).toBe(out.results[0].slices_present.length);
    const referenced = ds.elements.x00081115.items![0].dataSet!.string('x0020000e');
    expect(referenced).toBe(series.seriesUid);
    // the segment is coded by the vocabulary's SNOMED CT code, and says how the slices were judged
    const segment = ds.elements.x00620002.items![0].dataSet!;
    expect(segment.elements.x0062000f.items![0].dataSet!.string('x00080100')).toBe('39607008');
    expect(segment.string('x00620006')).toMatch(/^promptseg slices: \d+ accept, \d+ review, \d+ reject$/);
  }, 60_000);

  it('a series the PACS does not have, a NIfTI volume to store as a SEG, a PACS that errs and one that is gone: clear errors, nothing stored', async () => {
    const missing = await post('/v1/segment-volume', { image: { dicomweb: { study_uid: series.studyUid, series_uid: '1.2.3.4.5' } }, prompts: ['lungs'] });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { detail: string }).detail).toMatch(/the PACS has no such series/);
    const before = ((await (await fetch(`${pacs}/statistics`)).json()) as { CountInstances: number }).CountInstances;
    // a SEG references source instances: a NIfTI volume cannot be stored as one
    const nifti = await post('/v1/segment-volume', { image: { base64: niftiVolume([32, 32, 3], [1, 1, 1]).bytes.toString('base64') }, prompts: ['lungs'], store_seg: true });
    expect(nifti.status).toBe(422);
    expect(((await nifti.json()) as { detail: string }).detail).toContain('store_seg needs a DICOM series');
    orthanc!.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const gone = await post('/v1/segment-volume', { image: { dicomweb: { study_uid: series.studyUid, series_uid: series.seriesUid } }, prompts: ['lungs'], store_seg: true });
    expect(gone.status).toBe(502);
    expect(((await gone.json()) as { detail: string }).detail).toMatch(/the PACS could not be reached for fetching series/);
    const list = await fetch(`${srv.url}/v1/pacs/series`);
    expect(list.status).toBe(502);
    // back up on the same storage: nothing was added by the failed request
    await startOrthanc();
    expect(((await (await fetch(`${pacs}/statistics`)).json()) as { CountInstances: number }).CountInstances).toBe(before);
  }, 60_000);
  it.skipIf(noRedis)(`a batch over a PACS query: one job per series found, each segmented from the PACS by a worker into NIfTI masks and a DICOM SEG${noRedis ? ` (skipped: ${noRedis})` : ''}`, async () => {
    const redis = await TestRedis.start();
    const out = mkdtempSync(path.join(tmpdir(), 'promptseg-pacs-batch-'));
    const env = { ...process.env, PROMPTSEG_REDIS_URL: redis.url, PROMPTSEG_DICOMWEB_URL: `${pacs}/dicom-web`, PROMPTSEG_LOG_LEVEL: 'silent', PROMPTSEG_RELAUNCH: '0', PROMPTSEG_THREADS: '1' };
    const cli = path.join(ROOT, 'dist', 'main', 'cli.js');
    const worker = spawn(process.execPath, [cli, 'worker'], { env, stdio: 'ignore' });
    try {
      const submit = spawnSync(process.execPath, [cli, 'batch', 'submit', '--pacs-modality', 'CT', '--prompt', 'lungs', '--out', out], { env, encoding: 'utf8' });
      expect(submit.status, submit.stderr).toBe(0);
      const id = submit.stdout.trim();
      for (let i = 0; i < 300 && !existsSync(path.join(out, 'summary.json')); i++) await new Promise((r) => setTimeout(r, 100));
      const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { batch: string; total: number; done: number; results: { file: string; dims: number[]; mask_files: string[] }[] };
      expect([summary.batch, summary.total, summary.done]).toEqual([id, 1, 1]);
      expect(summary.results[0]).toMatchObject({ file: `dicomweb:${series.studyUid}/${series.seriesUid}`, dims: [64, 64, 5] });
      expect(readdirSync(out).sort()).toEqual([`${series.seriesUid}__lungs.nii.gz`, `${series.seriesUid}__seg.dcm`, 'summary.json']);
      const seg = dicomParser.parseDicom(readFileSync(path.join(out, `${series.seriesUid}__seg.dcm`)));
      expect(seg.elements.x00081115.items![0].dataSet!.string('x0020000e')).toBe(series.seriesUid);
    } finally {
      worker.kill('SIGTERM');
      await redis.down();
    }
  }, 90_000);
});

describe('a PACS that fails mid-way (a server made to fail)', () => {
  it('a time-out, a 500 and a series transfer broken off mid-way each give a clear upstream_failed error (HTTP 502) naming what failed', async () => {
    const http = await import('node:http');
    const behaviours: Record<string, (res: import('node:http').ServerResponse) => void> = {
      '/slow': () => undefined, // never answers
      '/err': (res) => res.writeHead(500, 'Internal Server Error').end('boom'),
      '/cut': (res) => {
        res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=XYZ' });
        res.write('--XYZ\r\nContent-Type: application/dicom\r\n\r\n' + 'x'.repeat(1000));
        setTimeout(() => res.destroy(), 50); // the connection drops before the part ends
      },
    };
    const fake = http.createServer((req, res) => behaviours[`/${(req.url ?? '').split('/')[1]}`]?.(res));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const port = (fake.address() as { port: number }).port;
    const { fetchSeries } = await import('../../src/service/dicomweb.js');
    const config = (p: string) => testConfig({ PROMPTSEG_DICOMWEB_URL: `http://127.0.0.1:${port}/${p}`, PROMPTSEG_DICOMWEB_TIMEOUT_MS: '500' });
    const failure = (p: string) => fetchSeries(config(p), '1.2.3', '1.2.3.4', 1e8).then(() => undefined, (e: { error: { kind: string; message: string } }) => e.error);
    try {
      expect(await failure('slow')).toMatchObject({ kind: 'upstream_failed', message: expect.stringMatching(/did not answer fetching series within 500 ms/) });
      expect(await failure('err')).toMatchObject({ kind: 'upstream_failed', message: expect.stringMatching(/answered fetching series with 500/) });
      expect(await failure('cut')).toMatchObject({ kind: 'upstream_failed', message: expect.stringMatching(/broke off/) });
    } finally {
      fake.closeAllConnections();
      await new Promise((r) => fake.close(r));
    }
  }, 30_000);
});
