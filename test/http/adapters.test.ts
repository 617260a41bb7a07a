import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { dice } from '../../src/eval/metrics.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { makeLabelledFolder, PHANTOM } from '../helpers/labelled-folder.js';
import { testConfig } from '../helpers/service.js';

const root = mkdtempSync(path.join(tmpdir(), 'promptseg-adapters-'));
const data = path.join(root, 'data');
const adaptersDir = path.join(root, 'adapters');
const folder = path.join(data, 'phantom');
let srv: RunningServer;
let adapterId = '';
type Job = { id: string; status: string; progress: { done: number; total: number; message: string }; result?: { adapter: { id: string; k: number; validation: { dice_mean: number } | null } }; error?: { message: string } };

const api = async (p: string, init: { method?: string; body?: unknown } = {}) => {
  const r = await fetch(`${srv.url}${p}`, { method: init.method ?? (init.body ? 'POST' : 'GET'), headers: init.body ? { 'content-type': 'application/json' } : {}, body: init.body ? JSON.stringify(init.body) : undefined });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

async function untilDone(id: string): Promise<{ job: Job; seen: number[] }> {
  const seen: number[] = [];
  for (;;) {
    const { body } = await api(`/v1/jobs/${id}`);
    const job = body as unknown as Job;
    seen.push(job.progress.done);
    if (job.status === 'succeeded' || job.status === 'failed') return { job, seen };
    await new Promise((r) => setTimeout(r, 250));
  }
}

const segmentCase = async (c: string, prompts: string[]) => {
  const png = readFileSync(path.join(folder, 'images', `${c}.png`));
  return api('/v1/segment', { body: { image: { base64: png.toString('base64') }, prompts, outputs: ['png'] } });
};

const maskOf = async (b64: string) => {
  const { data: d } = await sharp(Buffer.from(b64, 'base64')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return Uint8Array.from(d, (v) => (v > 127 ? 1 : 0));
};

const truth = async (c: string) => maskOf(readFileSync(path.join(folder, 'masks', PHANTOM.slug, `${c}.png`)).toString('base64'));

beforeAll(async () => {
  await makeLabelledFolder(folder, { n: 12, splits: { train: 6, val: 3 } });
  srv = await startServer(testConfig({ PROMPTSEG_ALLOWED_ROOTS: data, PROMPTSEG_ADAPTERS_DIR: adaptersDir }), { log: false });
}, 60_000);
afterAll(async () => {
  await srv?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('adapters over HTTP: POST /v1/adapters makes a job, the structure is then served', () => {
  it('POST /v1/adapters answers at once with a job whose progress rises to an adapter, written atomically', async () => {
    const r = await api('/v1/adapters', { body: { folder, structure: PHANTOM.slug, shots: 4, seed: 2 } });
    expect(r.status).toBe(200);
    expect(['queued', 'running']).toContain(r.body.status);
    const { job, seen } = await untilDone(r.body.id as string);
    expect(job.error?.message).toBeUndefined();
    expect(job.status).toBe('succeeded');
    expect(new Set(seen).size).toBeGreaterThan(1);
    adapterId = job.result!.adapter.id;
    expect(job.result!.adapter.k).toBe(4);
    expect(job.result!.adapter.validation!.dice_mean).toBeGreaterThan(0.6);
    // one file, named for the id; no temporary file is left beside it
    expect(readdirSync(adaptersDir)).toEqual([`${adapterId}.json`]);
  }, 120_000);

  it('the adapter is listed, and list_structures and describe_model show it with how it was made', async () => {
    const list = await api('/v1/adapters');
    expect((list.body.adapters as { id: string }[]).map((a) => a.id)).toEqual([adapterId]);
    const structures = (await api('/v1/structures')).body.structures as { slug: string; adapter?: string }[];
    expect(structures.find((s) => s.slug === PHANTOM.slug)?.adapter).toBe(adapterId);
    const model = (await api('/v1/models/promptseg-builtin')).body as { adapters?: { id: string; source: { sha256: string } }[] };
    expect(model.adapters?.[0].id).toBe(adapterId);
    expect(model.adapters?.[0].source.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('segment serves the taught structure by its name and synonyms, with presence, a calibrated threshold and a verdict', async () => {
    const test = ['case09', 'case10', 'case11'];
    for (const c of test) {
      const r = await segmentCase(c, [PHANTOM.name, PHANTOM.synonyms[0]]);
      expect(r.status).toBe(200);
      const [byName, bySynonym] = r.body.results as { adapter?: string; presence: number; mask_threshold: number; verdict: string; mask_png_base64: string; structure: { slug: string } }[];
      for (const x of [byName, bySynonym]) {
        expect(x.adapter).toBe(adapterId);
        expect(x.structure.slug).toBe(PHANTOM.slug);
        expect(x.presence).toBeGreaterThan(0.5);
        expect(x.verdict).not.toBe('reject');
      }
      expect(dice(await maskOf(byName.mask_png_base64), await truth(c))).toBeGreaterThan(0.6);
    }
    // an image never sent before, asked only the adapter's structure: encoded now, then served from the cache
    const { data, info } = await sharp(readFileSync(path.join(folder, 'images', 'case11.png'))).raw().toBuffer({ resolveWithObject: true });
    data[0] ^= 1;
    const fresh = (await sharp(data, { raw: info }).png().toBuffer()).toString('base64');
    const first = await api('/v1/segment', { body: { image: { base64: fresh }, prompts: [PHANTOM.name] } });
    const again = await api('/v1/segment', { body: { image: { image_id: first.body.image_id }, prompts: [PHANTOM.name] } });
    expect([first.status, again.status]).toEqual([200, 200]);
    expect([(first.body.cache as { image_features: string }).image_features, (again.body.cache as { image_features: string }).image_features]).toEqual(['miss', 'hit']);
  }, 60_000);

  it('an image unlike every support image is refused by the adapter', async () => {
    const chest = await chestLikePng(256);
    const r = await api('/v1/segment', { body: { image: { base64: chest.toString('base64') }, prompts: [PHANTOM.name] } });
    const [x] = r.body.results as { verdict: string; reasons: { code: string; message: string }[] }[];
    expect(x.verdict).toBe('reject');
    expect(x.reasons.map((y) => y.code)).toContain('out_of_distribution');
    expect(x.reasons.find((y) => y.code === 'out_of_distribution')!.message).toContain(adapterId);
  });

  it('built-in structures answer exactly as without the adapter', async () => {
    const chest = (await chestLikePng(256)).toString('base64');
    const body = { image: { base64: chest }, prompts: ['heart', 'left lung'], outputs: ['png'] };
    const withIt = (await api('/v1/segment', { body })).body;
    const plain = await startServer(testConfig({ PROMPTSEG_ADAPTERS_DIR: path.join(root, 'none') }), { log: false });
    try {
      const without = (await (await fetch(`${plain.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as typeof withIt;
      const strip = (r: typeof withIt) => (r.results as Record<string, unknown>[]).map(({ mask_url: _u, mask_uri: _i, ...rest }) => rest);
      expect(strip(withIt)).toEqual(strip(without));
    } finally {
      await plain.close();
    }
  }, 60_000);

  it('names that collide with a built-in structure or with the adapter are refused at once, naming the clash', async () => {
    const heart = await api('/v1/adapters', { body: { folder, structure: PHANTOM.slug, name: 'heart' } });
    expect(heart.status).toBe(400);
    expect(heart.body.detail).toMatch(/"heart" already names the built-in structure heart/);
    const again = await api('/v1/adapters', { body: { folder, structure: PHANTOM.slug, name: 'second insert', synonyms: [PHANTOM.name] } });
    expect(again.status).toBe(400);
    expect(again.body.detail).toMatch(/already/);
  });

  it('bad folders get clear errors naming the file: outside the roots, no images, a mask of the wrong size, only empty masks', async () => {
    const outside = await api('/v1/adapters', { body: { folder: tmpdir(), structure: PHANTOM.slug } });
    expect(outside.status).toBe(422);
    const empty = path.join(data, 'empty');
    mkdirSync(path.join(empty, 'images'), { recursive: true });
    mkdirSync(path.join(empty, 'masks', 'thing'), { recursive: true });
    writeFileSync(path.join(empty, 'dataset.json'), '{"id":"empty"}');
    expect((await api('/v1/adapters', { body: { folder: empty, structure: 'thing' } })).body.detail).toMatch(/holds no images/);
    const wrong = path.join(data, 'wrong');
    await makeLabelledFolder(wrong, { n: 3, slug: 'wrong_insert', name: 'wrong insert' });
    await sharp(Buffer.alloc(50 * 40), { raw: { width: 50, height: 40, channels: 1 } }).png().toFile(path.join(wrong, 'masks', 'wrong_insert', 'case01.png'));
    const r = await api('/v1/adapters', { body: { folder: wrong, structure: 'wrong_insert' } });
    expect(r.body.detail).toBeUndefined();
    const { job } = await untilDone(r.body.id as string);
    expect(job.status).toBe('failed');
    expect(job.error!.message).toMatch(/masks\/wrong_insert\/case01\.png is 50x40, but its image images\/case01\.png is 160x128/);
    const blank = path.join(data, 'blank');
    await makeLabelledFolder(blank, { n: 2, slug: 'blank_insert', name: 'blank insert' });
    for (const c of ['case00', 'case01']) await sharp(Buffer.alloc(160 * 128), { raw: { width: 160, height: 128, channels: 1 } }).png().toFile(path.join(blank, 'masks', 'blank_insert', `${c}.png`));
    const b = await api('/v1/adapters', { body: { folder: blank, structure: 'blank_insert' } });
    expect((await untilDone(b.body.id as string)).job.error!.message).toMatch(/every support mask of blank_insert is empty/);
    const notImage = path.join(data, 'notimage');
    await makeLabelledFolder(notImage, { n: 2, slug: 'text_insert', name: 'text insert' });
    writeFileSync(path.join(notImage, 'images', 'notes.txt'), 'hello');
    expect((await api('/v1/adapters', { body: { folder: notImage, structure: 'text_insert' } })).body.detail).toMatch(/images\/notes\.txt is not an image file/);
  }, 60_000);

  it('the adapter survives a restart; half-written and damaged files are never served', async () => {
    writeFileSync(path.join(adaptersDir, `.${adapterId}.json.123.abcd.partial`), '{"format":"promptseg-adap');
    writeFileSync(path.join(adaptersDir, 'broken.json'), '{"format":"promptseg-adapter"');
    const again = await startServer(testConfig({ PROMPTSEG_ADAPTERS_DIR: adaptersDir }), { log: false });
    try {
      const list = (await (await fetch(`${again.url}/v1/adapters`)).json()) as { adapters: { id: string }[]; not_served: { file: string; reason: string }[] };
      expect(list.adapters.map((a) => a.id)).toEqual([adapterId]);
      expect(list.not_served).toEqual([{ file: 'broken.json', reason: expect.stringMatching(/not readable JSON/) }]);
    } finally {
      await again.close();
    }
    rmSync(path.join(adaptersDir, 'broken.json'));
  }, 60_000);

  it('MCP: adapt_structure runs to the end with progress notifications; DELETE then removes the adapter', async () => {
    const client = new Client({ name: 'adapter-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${srv.url}/mcp`)));
    const progress: number[] = [];
    const second = path.join(data, 'second');
    await makeLabelledFolder(second, { n: 4, slug: 'mcp_insert', name: 'mcp insert', seed: 9 });
    const res = (await client.callTool({ name: 'adapt_structure', arguments: { folder: second, structure: 'mcp_insert', shots: 2, seed: 5 } }, undefined, { onprogress: (p) => progress.push(p.progress), timeout: 120_000 })) as { isError?: boolean; structuredContent?: Job };
    await client.close();
    expect(JSON.stringify(res).slice(0, 300)).not.toMatch(/"isError":true/);
    expect(res.structuredContent!.status).toBe('succeeded');
    expect(progress.length).toBeGreaterThan(5);
    const mcpId = res.structuredContent!.result!.adapter.id;
    expect((await api(`/v1/adapters/${mcpId}`, { method: 'DELETE' })).body).toEqual({ deleted: mcpId });
    expect(existsSync(path.join(adaptersDir, `${mcpId}.json`))).toBe(false);
    expect((await api(`/v1/adapters/${mcpId}`, { method: 'DELETE' })).status).toBe(404);
    const r = await segmentCase('case09', ['mcp insert']);
    expect((r.body.results as { adapter?: string }[])[0].adapter).toBeUndefined();
  }, 120_000);
});
