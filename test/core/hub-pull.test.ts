import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullBundle } from '../../src/core/models/hub-pull.js';
import { AppFailure } from '../../src/core/errors.js';
import { MODELS_DIR, ROOT } from '../helpers/project.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const FILES: Record<string, Buffer> = {
  'config.json': Buffer.from(JSON.stringify({ model_type: 'tiny' })),
  'onnx/model.onnx': Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 251)),
  'corrupt.bin': Buffer.from('the bytes the hub really serves'),
  'onnx/decoder.onnx': readFileSync(path.join(MODELS_DIR, 'tiny', 'slimsam-tiny', 'onnx', 'prompt_encoder_mask_decoder.onnx')),
};

/** A local server with the hub's file layout; it drops the first connection for the big file midway. */
let server: http.Server;
let endpoint = '';
const requests: { path: string; range?: string }[] = [];
let dropped = false;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    const m = /^\/org\/tiny\/resolve\/main\/(.+)$/.exec(decodeURIComponent(req.url ?? ''));
    requests.push({ path: m?.[1] ?? '', range: req.headers.range });
    const body = m ? FILES[m[1]] : undefined;
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    if (req.method === 'HEAD') {
      // like the hub: LFS files state their sha256 and size in X-Linked-Etag / X-Linked-Size; corrupt.bin's is of other bytes
      const lfs = /\.(onnx|bin)$/.test(m![1]);
      const claimed = m![1] === 'corrupt.bin' ? sha(Buffer.from('what the hub says it serves')) : sha(body);
      res.writeHead(302, { location: req.url ?? '/', ...(lfs ? { 'x-linked-etag': `"${claimed}"`, 'x-linked-size': String(body.length) } : { etag: '"0123456789abcdef0123456789abcdef01234567"' }) }).end();
      return;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) start = Number(range[1]);
    res.writeHead(range ? 206 : 200, { 'content-length': body.length - start, ...(range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (m![1] === 'onnx/model.onnx' && !dropped) {
      dropped = true;
      // cut the connection a moment after the first 100 KB went out, so that the client has read and
      // saved them (cut at once, a loaded machine may drop the bytes with the socket, and the
      // client rightly starts again from zero)
      res.write(body.subarray(start, start + 100_000), () => setTimeout(() => res.destroy(), 300));
      return;
    }
    res.end(body.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** A port nothing listens on (bound, then released). */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

const files = (names: string[], override: Record<string, string> = {}) => names.map((p) => ({ path: p, sha256: override[p] ?? sha(FILES[p]), bytes: FILES[p]?.length }));
const kind = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof AppFailure) return e.error.message;
    throw e;
  }
};

describe('models pull against a local hub', () => {
  it('downloads, resumes a dropped connection with a Range request, and verifies sha256', async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'pull-'));
    const r = await pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: files(['config.json', 'onnx/model.onnx']) }, { endpoint });
    expect(r.downloaded).toEqual(['config.json', 'onnx/model.onnx']);
    expect(readFileSync(path.join(dest, 'onnx/model.onnx')).equals(FILES['onnx/model.onnx'])).toBe(true);
    const resumed = requests.filter((q) => q.path === 'onnx/model.onnx' && q.range);
    expect(resumed.length).toBe(1);
    expect(Number(/^bytes=(\d+)-$/.exec(resumed[0].range!)![1])).toBeGreaterThan(0);
    const again = await pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: files(['config.json', 'onnx/model.onnx']) }, { endpoint });
    expect(again).toEqual({ downloaded: [], kept: ['config.json', 'onnx/model.onnx'] });
  });

  it('refuses a file whose sha256 differs from the manifest and removes it', async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'pull-'));
    const msg = await kind(pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: files(['corrupt.bin'], { 'corrupt.bin': 'a'.repeat(64) }) }, { endpoint }));
    expect(msg).toMatch(/corrupt\.bin failed verification/);
    expect(existsSync(path.join(dest, 'corrupt.bin'))).toBe(false);
    expect(existsSync(path.join(dest, 'corrupt.bin.part'))).toBe(false);
  });

  it('verifies files the manifest gives no sha256 against the hub\'s X-Linked-Etag, and refuses a mismatch', async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'pull-'));
    const r = await pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: [{ path: 'config.json' }, { path: 'onnx/model.onnx' }] }, { endpoint });
    expect(r.downloaded).toEqual(['config.json', 'onnx/model.onnx']);
    expect(readFileSync(path.join(dest, 'onnx/model.onnx')).equals(FILES['onnx/model.onnx'])).toBe(true);
    // a second pull keeps the LFS file (its hash matches the hub's) without downloading it again
    const again = await pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: [{ path: 'onnx/model.onnx' }] }, { endpoint });
    expect(again).toEqual({ downloaded: [], kept: ['onnx/model.onnx'] });
    const msg = await kind(pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: [{ path: 'corrupt.bin' }] }, { endpoint }));
    expect(msg).toMatch(/corrupt\.bin failed verification/);
    expect(existsSync(path.join(dest, 'corrupt.bin'))).toBe(false);
  });

  it('reports a missing file and an unreachable hub clearly', async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'pull-'));
    expect(await kind(pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: [{ path: 'nope.bin' }] }, { endpoint }))).toMatch(/no file nope\.bin \(404/);
    const closed = await closedPort();
    expect(await kind(pullBundle({ repo: 'org/tiny', revision: 'main', dest, files: files(['config.json']) }, { endpoint: `http://127.0.0.1:${closed}` }))).toMatch(/cannot reach the model hub.*ECONNREFUSED/);
  });

  it('the CLI pulls a manifest bundle via HF_ENDPOINT, and a request for an unpulled bundle names the pull command', async () => {
    const models = mkdtempSync(path.join(tmpdir(), 'models-'));
    const manifest = JSON.parse(readFileSync(path.join(MODELS_DIR, 'manifest.json'), 'utf8'));
    cpSync(path.join(MODELS_DIR, 'promptseg-builtin'), path.join(models, 'promptseg-builtin'), { recursive: true, filter: (p) => !p.includes('train-state') });
    manifest.models.push({ ...manifest.models[0], specialists: undefined, id: 'tiny-bundle', dir: 'tiny-bundle', hub: { repo: 'org/tiny', revision: 'main' }, files: Object.fromEntries(files(['config.json', 'onnx/model.onnx', 'onnx/decoder.onnx']).map((f) => [f.path, { sha256: f.sha256, bytes: f.bytes }])) });
    writeFileSync(path.join(models, 'manifest.json'), JSON.stringify(manifest));
    const run = promisify(execFile);
    const env = { ...process.env, PROMPTSEG_MODELS_DIR: models, PROMPTSEG_LOG_LEVEL: 'silent' };
    const { ModelRegistry } = await import('../../src/core/models/registry.js');
    const reg = new ModelRegistry(models, 1);
    const before = await kind(reg.get('tiny-bundle').load());
    expect(before).toMatch(/not installed.*promptseg models pull tiny-bundle/);
    const r = await run(process.execPath, [path.join(ROOT, 'dist', 'main', 'cli.js'), 'models', 'pull', 'tiny-bundle'], { env: { ...env, HF_ENDPOINT: endpoint } });
    expect(r.stderr).toMatch(/3 file\(s\) downloaded and verified/);
    // each pulled graph's declared inputs are printed, so a user can check the export the runner will feed
    expect(r.stderr).toMatch(/tiny-bundle: onnx\/decoder.onnx inputs: image_embeddings float32 \[1, 8, 16, 16\]; .*input_labels int64 \[1, point_batch, points\]; input_boxes float32 \[1, boxes, 4\]/);
    expect(r.stderr).toMatch(/tiny-bundle: onnx\/model.onnx inputs: could not be read/);
    expect(existsSync(path.join(models, 'tiny-bundle', 'onnx', 'model.onnx'))).toBe(true);
    const offline = await run(process.execPath, [path.join(ROOT, 'dist', 'main', 'cli.js'), 'models', 'pull', 'tiny-bundle'], { env: { ...env, HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    // everything is already present and verified, so nothing needs the network
    expect(offline.code).toBe(0);
    // with a file missing and no network, the pull fails with a reason and exit code 1
    const { rmSync } = await import('node:fs');
    rmSync(path.join(models, 'tiny-bundle', 'config.json'));
    const failed = await run(process.execPath, [path.join(ROOT, 'dist', 'main', 'cli.js'), 'models', 'pull', 'tiny-bundle'], { env: { ...env, HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/cannot reach the model hub/);
  });
});
