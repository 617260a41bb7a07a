import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { chestLikePng, greyPng } from '../helpers/fixtures.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';
import { testConfig } from '../helpers/service.js';

/** A request with exactly these headers (fetch would rewrite Host), answered with status, headers and body. */
function raw(url: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const body = o.body ?? '';
    const req = http.request(url, { method: o.method ?? 'GET', headers: { ...(o.body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}), ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const root = mkdtempSync(path.join(tmpdir(), 'promptseg-hard-'));
const inside = path.join(root, 'allowed');
const outsideDir = path.join(root, 'private');
mkdirSync(inside);
mkdirSync(outsideDir);
let srv: RunningServer;
let port = 0;
let chest: Buffer;

beforeAll(async () => {
  chest = await chestLikePng(128);
  writeFileSync(path.join(inside, 'chest.png'), chest);
  writeFileSync(path.join(outsideDir, 'secret.png'), await greyPng(50, 40, () => 99));
  srv = await startServer(testConfig({ PROMPTSEG_ALLOWED_ROOTS: inside, PROMPTSEG_MAX_PROMPTS: '16', PROMPTSEG_MAX_VOLUME_VOXELS: '1000000' }), { log: false });
  await srv.ctx.pipeline.registry.get().load();
  port = Number(new URL(srv.url).port);
});
afterAll(async () => {
  await srv.close();
  rmSync(root, { recursive: true, force: true });
});

const segmentByPath = (p: string, headers: Record<string, string> = {}) =>
  raw(`${srv.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ image: { path: p }, prompts: ['heart'], overlay: true }) });

describe('DNS rebinding: Host and Origin on every route', () => {
  it('refuses a rebound name in Host, names that only start like loopback, and foreign origins, on /v1 as on /mcp', async () => {
    for (const host of [`rebind.attacker.example:${port}`, `127.attacker.example:${port}`, `127.0.0.1.nip.io:${port}`, 'localhost.evil.com']) {
      const r = await segmentByPath(path.join(inside, 'chest.png'), { host });
      expect(r.status, host).toBe(403);
      expect(r.body).not.toContain('overlay_png_base64');
      expect(JSON.parse(r.body).detail).toMatch(/Host .* is not one this server answers/);
      expect((await raw(`${srv.url}/v1/models`, { headers: { host } })).status).toBe(403);
    }
    const evilOrigin = await segmentByPath(path.join(inside, 'chest.png'), { origin: 'http://127.0.0.1.evil.com' });
    expect(evilOrigin.status).toBe(403);
    expect(JSON.parse(evilOrigin.body).detail).toMatch(/Origin .* is not allowed/);
    expect((await segmentByPath(path.join(inside, 'chest.png'), { origin: 'null' })).status).toBe(403);
  });

  it('a server reachable from other machines that reads files by path will not start without tokens', async () => {
    await expect(startServer(testConfig({ HOST: '0.0.0.0', PROMPTSEG_ALLOWED_ROOTS: inside }), { log: false, warm: false })).rejects.toThrow(/set PROMPTSEG_API_TOKENS/);
    const ok = await startServer(testConfig({ HOST: '0.0.0.0', PROMPTSEG_ALLOWED_ROOTS: inside, PROMPTSEG_API_TOKENS: 't' }), { log: false, warm: false });
    await ok.close();
  });

  it('answers localhost, IP literals and the page\'s own origin', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `127.0.0.2:${port}`]) {
      expect((await raw(`${srv.url}/v1/models`, { headers: { host } })).status, host).toBe(200);
    }
    const own = await segmentByPath(path.join(inside, 'chest.png'), { origin: srv.url });
    expect(own.status).toBe(200);
  });

  it('serves the page with a CSP that allows its own script and style only, and no framing or sniffing anywhere', async () => {
    const page = await raw(`${srv.url}/`);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    for (const p of ['/', '/v1/models', '/healthz', '/docs']) {
      const r = await raw(`${srv.url}${p}`);
      expect(r.headers['x-content-type-options'], p).toBe('nosniff');
      expect(r.headers['x-frame-options'], p).toBe('DENY');
    }
  });
});

describe('reading images by path', () => {
  it('gives the same answer for outside the roots and for missing files, without echoing the roots', async () => {
    const outside = JSON.parse((await segmentByPath(path.join(outsideDir, 'secret.png'))).body).detail as string;
    const missing = JSON.parse((await segmentByPath(path.join(inside, 'nope.png'))).body).detail as string;
    expect(outside.replace(/at \S+/, 'at X')).toBe(missing.replace(/at \S+/, 'at X'));
    expect(outside).not.toContain(inside);
    const link = path.join(inside, 'link.png');
    symlinkSync(path.join(outsideDir, 'secret.png'), link);
    expect((await segmentByPath(link)).status).toBe(422);
    rmSync(link);
  });

  it('a FIFO inside a root is refused at once, and later reads still work', async () => {
    const fifo = path.join(inside, 'pipe.png');
    execFileSync('mkfifo', [fifo]);
    const r = await segmentByPath(fifo);
    expect(r.status).toBe(422);
    expect((await segmentByPath(path.join(inside, 'chest.png'))).status).toBe(200);
    rmSync(fifo);
  });

  it('never serves an outside file while a file inside is swapped for a symlink to it', { timeout: 60_000 }, async () => {
    const target = path.join(inside, 'swap.png');
    const plain = path.join(inside, 'swap-plain.png');
    const link = path.join(inside, 'swap-link.png');
    writeFileSync(plain, chest);
    writeFileSync(target, chest);
    symlinkSync(path.join(outsideDir, 'secret.png'), link);
    let stop = false;
    const swapper = (async () => {
      for (let i = 0; !stop && i < 20_000; i++) {
        // rename is atomic: the name points at the inside file or at the link, never at nothing
        writeFileSync(plain, chest);
        renameSync(plain, target);
        symlinkSync(path.join(outsideDir, 'secret.png'), `${link}.new`);
        renameSync(`${link}.new`, target);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const widths: number[] = [];
    for (let i = 0; i < 60; i++) {
      const r = await segmentByPath(target);
      if (r.status === 200) widths.push(JSON.parse(r.body).width);
      else expect(r.status).toBe(422);
    }
    stop = true;
    await swapper;
    expect(widths.every((w) => w === 128)).toBe(true); // the outside image is 50 px wide
  });
});

describe('budgets, deadlines and cancellation', () => {
  it('refuses a request over the cost budget before any work, naming what to reduce', async () => {
    const big = await sharp({ create: { width: 2048, height: 2048, channels: 3, background: { r: 90, g: 90, b: 90 } } }).jpeg().toBuffer();
    const r = await raw(`${srv.url}/v1/segment`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: { base64: big.toString('base64') }, prompts: Array.from({ length: 16 }, (_, i) => (i % 2 ? 'heart' : 'left lung')), tta: 8, tta_image: 12, zoom: 'on', specialist: 'on', overlay: true }),
    });
    expect(r.status).toBe(422);
    const detail = JSON.parse(r.body).detail as string;
    expect(detail).toMatch(/megapixel-passes .*over this server's budget of 256 \(PROMPTSEG_MAX_COST\)/);
    expect(detail).toMatch(/tta 8/);
    expect(detail).toMatch(/fewer prompts/);
  });

  it('stops a request past its deadline with 504, and one whose client hung up, and keeps serving', { timeout: 60_000 }, async () => {
    // a request of several seconds' work (16 prompts, every paraphrase and image transform)
    const heavy = JSON.stringify({ image: { base64: (await chestLikePng(768)).toString('base64') }, prompts: Array.from({ length: 16 }, (_, i) => ['left lung', 'right lung', 'heart', 'left clavicle'][i % 4] + ' '.repeat(i)), tta: 8, tta_image: 12 });
    const quick = await startServer(testConfig({ PROMPTSEG_REQUEST_TIMEOUT_MS: '400', PROMPTSEG_MAX_COST: '100000' }), { log: false });
    try {
      await quick.ctx.pipeline.registry.get().load();
      const late = await fetch(`${quick.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: heavy });
      expect(late.status).toBe(504);
      expect(((await late.json()) as { detail: string }).detail).toMatch(/deadline of 400 ms/);
      expect(quick.ctx.queue.active).toBe(0);
    } finally {
      await quick.close();
    }
    const patient = await startServer(testConfig({ PROMPTSEG_MAX_COST: '100000' }), { log: false });
    try {
      await patient.ctx.pipeline.registry.get().load();
      const stopped = () => patient.ctx.counters.get('op_segment_errors_deadline_exceeded') ?? 0;
      const ac = new AbortController();
      const gone = fetch(`${patient.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: heavy, signal: ac.signal }).catch(() => 'aborted');
      setTimeout(() => ac.abort(), 300);
      expect(await gone).toBe('aborted');
      // the server notices the hang-up and stops the remaining passes (a bounded wait, not a speed check)
      for (let i = 0; i < 400 && stopped() === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(stopped()).toBe(1);
      expect(patient.ctx.queue.active).toBe(0);
      expect((await fetch(`${patient.url}/healthz`)).status).toBe(200);
    } finally {
      await patient.close();
    }
  });
});

describe('NIfTI volumes are checked from the header before they are inflated', () => {
  const header = (dims: [number, number, number], datatype = 2, bitpix = 8) => {
    const h = Buffer.alloc(352);
    h.writeInt32LE(348, 0);
    h.writeInt16LE(3, 40);
    dims.forEach((d, i) => h.writeInt16LE(d, 42 + 2 * i));
    for (let k = 4; k < 8; k++) h.writeInt16LE(1, 40 + 2 * k);
    h.writeInt16LE(datatype, 70);
    h.writeInt16LE(bitpix, 72);
    for (let k = 0; k < 4; k++) h.writeFloatLE(1, 76 + 4 * k);
    h.writeFloatLE(352, 108);
    h.write('n+1\0', 344, 'latin1');
    return h;
  };
  const volume = (bytes: Buffer, extra: object = {}) =>
    raw(`${srv.url}/v1/segment-volume`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: bytes.toString('base64') }, prompts: ['liver'], ...extra }) });

  it('a header over the voxel limit is refused without inflating the rest (413 naming dims)', async () => {
    // 1000 x 1000 x 320 declared; only 8 MB of zeros follow, which is all the test needs to make
    const bomb = gzipSync(Buffer.concat([header([1000, 1000, 320]), Buffer.alloc(8 * 1024 * 1024)]));
    const r = await volume(bomb, { slice_range: [0, 0] });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toMatchObject({ field: 'dim' });
    expect(JSON.parse(r.body).detail).toMatch(/1000x1000x320 = 320000000 voxels, over the limit of 1000000/);
  });

  it('gzip data that inflates past what its header declares is refused', async () => {
    const r = await volume(gzipSync(Buffer.concat([header([10, 10, 10]), Buffer.alloc(4 * 1024 * 1024)])));
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).detail).toMatch(/inflates to more than the 1352 bytes its header declares/);
  });

  it('a slice range allocates and writes only those slices; the mask keeps the full dims', async () => {
    const vol = niftiVolume([64, 48, 9], [0.8, 0.8, 3], { gzip: true });
    const r = await volume(vol.bytes, { slice_range: [4, 4] });
    expect(r.status).toBe(200);
    const out = JSON.parse(r.body) as { results: { voxels: number; slices_present: number[]; mask_url: string }[] };
    const m = Buffer.from(await (await fetch(`${srv.url}${out.results[0].mask_url}`)).arrayBuffer());
    const { gunzipSync } = await import('node:zlib');
    const data = gunzipSync(m).subarray(352);
    expect(data.length).toBe(64 * 48 * 9);
    const perSlice = Array.from({ length: 9 }, (_, k) => data.subarray(k * 64 * 48, (k + 1) * 64 * 48).reduce((s, v) => s + v, 0));
    expect(perSlice.filter((n, k) => k !== 4 && n > 0)).toEqual([]);
    expect(perSlice[4]).toBe(out.results[0].voxels);
  });
});

describe('a huge image is worked on at a working resolution and answered at its own', () => {
  it('masks, maps, statistics and the DICOM SEG come at the size sent; areas in mm² from the spacing sent', { timeout: 60_000 }, async () => {
    const small = await startServer(testConfig({ PROMPTSEG_WORK_MAX_PIXELS: '65536' }), { log: false });
    try {
      await small.ctx.pipeline.registry.get().load();
      const png = await chestLikePng(512);
      const r = await fetch(`${small.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: png.toString('base64') }, prompts: ['left lung', 'heart'], outputs: ['rle'], pixel_spacing_mm: [0.2, 0.2] }) });
      expect(r.status).toBe(200);
      const out = (await r.json()) as { width: number; height: number; results: { area_px: number; area_mm2: number; bbox: number[]; mask_url: string; rle: { size: number[]; counts: number[] } }[] };
      expect([out.width, out.height]).toEqual([512, 512]);
      for (const res of out.results) {
        const mask = await sharp(Buffer.from(await (await fetch(`${small.url}${res.mask_url}`)).arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
        expect([mask.info.width, mask.info.height]).toEqual([512, 512]);
        const ones = mask.data.reduce((n, v, i) => n + (i % mask.info.channels === 0 && v > 127 ? 1 : 0), 0);
        expect(ones).toBe(res.area_px);
        expect(res.rle.size).toEqual([512, 512]);
        expect(res.rle.counts.reduce((a, b) => a + b, 0)).toBe(512 * 512);
        expect(res.area_mm2).toBeCloseTo(res.area_px * 0.04, 2);
        const prob = await sharp(Buffer.from(await (await fetch(`${small.url}${res.mask_url.replace('/masks/', '/probability/')}`)).arrayBuffer())).metadata();
        expect([prob.width, prob.height]).toEqual([512, 512]);
      }
      const { ctSliceHu } = await import('../helpers/dicom-fixtures.js');
      const dicomParser = (await import('dicom-parser')).default;
      const ct = ctSliceHu(320, 0.7);
      const c = (await (await fetch(`${small.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: ct.bytes.toString('base64') }, prompts: ['lungs', 'liver'], threshold: 0.2 }) })).json()) as { width: number; results: { mask_produced: boolean; dicom_seg_url: string }[] };
      expect(c.width).toBe(320);
      if (c.results.some((x) => x.mask_produced)) {
        const ds = dicomParser.parseDicom(new Uint8Array(await (await fetch(small.url + c.results[0].dicom_seg_url)).arrayBuffer()));
        expect([ds.uint16('x00280010'), ds.uint16('x00280011')]).toEqual([320, 320]);
      }
    } finally {
      await small.close();
    }
  });
});

describe('trust of the prompt text', () => {
  const seg = async (prompts: string[]) =>
    (await (await fetch(`${srv.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: chest.toString('base64') }, prompts }) })).json()) as {
      results: { prompt: string; verdict: string; mask_produced: boolean; structure: { slug: string } | null; reasons: { code: string; message: string }[] }[];
    };

  it('markup is answered as nonsense, and bidi or control characters are removed before matching and display', async () => {
    const out = await seg(['<img src=x onerror=alert(1)>', '\u202eheart', 'he\u200bart\u0007', 'javascript:alert(1)']);
    for (const i of [0, 3]) {
      expect(out.results[i].verdict).toBe('reject');
      expect(out.results[i].mask_produced).toBe(false);
      expect(out.results[i].reasons[0].code).toBe('prompt_not_text');
    }
    expect(out.results[1].prompt).toBe('heart');
    expect(out.results[1].structure?.slug).toBe('heart');
    expect(out.results[2].prompt).toBe('heart');
    const empty = await fetch(`${srv.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: chest.toString('base64') }, prompts: ['\u202e\u200b'] }) });
    expect(empty.status).toBe(422);
  });

  it('says plainly when it finds no structure for a prompt outside the vocabulary', async () => {
    const out = await seg(['zebra stripes']);
    const absent = out.results[0].reasons.find((r) => r.code === 'structure_absent');
    if (absent) expect(absent.message).toMatch(/does not find the prompted structure/);
    for (const r of out.results[0].reasons) expect(r.message).not.toMatch(/finds no the/);
  });
});

describe('small findings', () => {
  it('a pixel spacing that would make areas infinite is refused', async () => {
    const r = await raw(`${srv.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: chest.toString('base64') }, prompts: ['heart'], pixel_spacing_mm: [1e308, 1e308] }) });
    expect(r.status).toBe(422);
    expect(JSON.parse(r.body).field).toMatch(/pixel_spacing_mm/);
  });

  it('a multipart form with a million prompts is refused by size or count, not by a stack overflow', async () => {
    const fd = new FormData();
    fd.append('image', new Blob([new Uint8Array(chest)], { type: 'image/png' }), 'x.png');
    fd.append('prompts', JSON.stringify(Array.from({ length: 1_000_000 }, () => 'h')));
    const r = await fetch(`${srv.url}/v1/segment`, { method: 'POST', body: fd });
    expect(r.status).toBe(422);
    expect(((await r.json()) as { detail: string }).detail).toMatch(/the form field "prompts" is over 65536 bytes/);
    // within the field size, the count is what is refused
    const fd2 = new FormData();
    fd2.append('image', new Blob([new Uint8Array(chest)], { type: 'image/png' }), 'x.png');
    fd2.append('prompts', JSON.stringify(Array.from({ length: 5000 }, () => 'h')));
    const r2 = await fetch(`${srv.url}/v1/segment`, { method: 'POST', body: fd2 });
    expect(r2.status).toBe(422);
    expect(((await r2.json()) as { detail: string }).detail).toMatch(/at most 16 prompts/);
  });

  it('image ids are keyed and scoped to the caller: no sha256 of the bytes, unknown to another token', async () => {
    const locked = await startServer(testConfig({ PROMPTSEG_API_TOKENS: 'token-a,token-b' }), { log: false });
    try {
      await locked.ctx.pipeline.registry.get().load();
      const send = async (token: string, image: object) =>
        fetch(`${locked.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ image, prompts: ['heart'] }) });
      const a = (await (await send('token-a', { base64: chest.toString('base64') })).json()) as { image_id: string };
      const b = (await (await send('token-b', { base64: chest.toString('base64') })).json()) as { image_id: string };
      const { createHash } = await import('node:crypto');
      expect(a.image_id).not.toBe(createHash('sha256').update(chest).digest('hex'));
      expect(a.image_id).not.toBe(b.image_id);
      expect((await send('token-a', { image_id: a.image_id })).status).toBe(200);
      expect((await send('token-b', { image_id: a.image_id })).status).toBe(422);
      // /metrics needs the token when tokens are configured
      expect((await fetch(`${locked.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${locked.url}/metrics`, { headers: { authorization: 'Bearer token-a' } })).status).toBe(200);
    } finally {
      await locked.close();
    }
  });
});
