import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { drawnChestRadiographPng } from '../helpers/fixtures.js';
import { noRedis, TestRedis } from '../helpers/redis.js';
import { testConfig } from '../helpers/service.js';
import { makeLabelledFolder, PHANTOM } from '../helpers/labelled-folder.js';

/**
 * Three replicas sharing a real Redis behind a round-robin proxy made here: consecutive requests
 * land on consecutive replicas, so a result, an image_id or an MCP client is used on replicas other
 * than the one that made it.
 */
describe.skipIf(noRedis)(`replicas sharing state on Redis${noRedis ? `: skipped, ${noRedis}` : ''}`, () => {
  let redis: TestRedis;
  const replicas: RunningServer[] = [];
  let proxy: Server;
  let proxyUrl = '';
  const hits: number[] = [];
  const root = mkdtempSync(path.join(tmpdir(), 'promptseg-replicas-'));
  const folder = path.join(root, 'phantom');

  beforeAll(async () => {
    redis = await TestRedis.start();
    await makeLabelledFolder(folder, { n: 12, splits: { train: 6, val: 3 } });
    // each replica its own adapters folder: adapters reach the others through Redis
    const shared = { PROMPTSEG_REDIS_URL: redis.url, PROMPTSEG_ID_KEY: 'a-key-every-replica-shares', PROMPTSEG_MCP_STATELESS: 'true', PROMPTSEG_ALLOWED_ROOTS: root };
    for (let i = 0; i < 3; i++) replicas.push(await startServer(testConfig({ ...shared, PROMPTSEG_ADAPTERS_DIR: path.join(root, `adapters-${i}`) }), { log: false }));
    let next = 0;
    proxy = createServer((req, res) => {
      const k = next++ % replicas.length;
      hits.push(k);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([h]) => !['host', 'connection', 'content-length'].includes(h)).map(([h, v]) => [h, String(v)]));
        const r = await fetch(`${replicas[k].url}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
        res.writeHead(r.status, Object.fromEntries([...r.headers].filter(([h]) => !['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(h))));
        res.end(Buffer.from(await r.arrayBuffer()));
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  }, 120_000);

  afterAll(async () => {
    proxy?.close();
    for (const r of replicas) await r.close();
    await redis?.down();
  });

  const post = async (body: object) => {
    const r = await fetch(`${proxyUrl}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as { image_id: string; result_id: string; cache: { image_features: string }; results: { mask_url: string; area_px: number }[] } };
  };

  it('a result made on one replica is served by the others; an image_id given by one is prompted on another', async () => {
    const png = (await drawnChestRadiographPng(200, 180)).toString('base64');
    hits.length = 0;
    const a = await post({ image: { base64: png }, prompts: ['left lung', 'heart'] });
    expect(a.status).toBe(200);
    const got: Buffer[] = [];
    for (const url of [a.json.results[0].mask_url, a.json.results[0].mask_url, a.json.results[0].mask_url.replace('/masks/', '/probability/')]) {
      const r = await fetch(`${proxyUrl}${url}`);
      expect(r.status, url).toBe(200);
      got.push(Buffer.from(await r.arrayBuffer()));
    }
    expect(got[0].equals(got[1])).toBe(true);
    expect(new Set(hits.slice(0, 4)).size).toBe(3); // the segment call and the downloads went to all three replicas
    const c = await post({ image: { image_id: a.json.image_id }, prompts: ['left lung'] });
    expect(c.status).toBe(200);
    expect(c.json.image_id).toBe(a.json.image_id);
    expect(c.json.results[0].area_px).toBe(a.json.results[0].area_px); // the same pixels, decoded again there
    const unknown = await fetch(`${proxyUrl}/v1/results/00000000-0000-0000-0000-000000000000/masks/0.png`);
    expect(unknown.status).toBe(422); // unknown on every replica and in Redis
  }, 120_000);

  it('a background job one replica runs is reported by the others (get_job)', async () => {
    const [a, b] = replicas;
    const job = a.ctx.jobs.create('adapt');
    a.ctx.jobs.update(job.id, { status: 'running', progress: { done: 3, total: 10, message: 'fitting' } });
    for (let i = 0; i < 50; i++) {
      const r = await fetch(`${b.url}/v1/jobs/${job.id}`);
      if (r.status === 200) {
        expect(await r.json()).toMatchObject({ id: job.id, status: 'running', progress: { done: 3, total: 10 } });
        return;
      }
      await new Promise((res) => setTimeout(res, 20)); // the write goes out without being awaited
    }
    throw new Error('the job never reached the other replica');
  });

  it('a structure taught on one replica (adapt_structure) is followed on the others (its job), served by them, and removed from all', async () => {
    const api = async (route: string, body?: object) => {
      const r = await fetch(`${proxyUrl}${route}`, body ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {});
      return { status: r.status, json: (await r.json()) as Record<string, any> };
    };
    hits.length = 0;
    const started = await api('/v1/adapters', { folder, structure: PHANTOM.slug, shots: 4, seed: 2 });
    expect(started.status).toBe(200);
    const ranOn = hits[0];
    let job = started.json;
    const seenOn = new Set<number>();
    for (let i = 0; i < 600 && !['succeeded', 'failed'].includes(job.status); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const r = await api(`/v1/jobs/${started.json.id}`);
      seenOn.add(hits[hits.length - 1]);
      if (r.status === 200) job = r.json;
    }
    expect(job.status).toBe('succeeded');
    expect([...seenOn].filter((k) => k !== ranOn).length).toBeGreaterThan(0); // followed on replicas that did not run it
    const listed = await Promise.all([0, 1, 2].map(() => api('/v1/adapters')));
    for (const l of listed) expect(l.json.adapters.map((a: { id: string }) => a.id)).toContain(job.result.adapter.id);
    const png = readFileSync(path.join(folder, 'images', 'case11.png')).toString('base64');
    const used = await Promise.all([0, 1, 2].map(() => api('/v1/segment', { image: { base64: png }, prompts: [PHANTOM.name] })));
    for (const u of used) expect(u.json.results[0].adapter).toBe(job.result.adapter.id);
    // each replica holds the adapter's file in its own folder now
    for (let i = 0; i < 3; i++) expect(readdirSync(path.join(root, `adapters-${i}`))).toEqual([`${job.result.adapter.id}.json`]);
    const del = await fetch(`${proxyUrl}/v1/adapters/${job.result.adapter.id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    const after = await Promise.all([0, 1, 2].map(() => api('/v1/adapters')));
    for (const l of after) expect(l.json.adapters).toEqual([]);
  }, 180_000);

  it('an MCP client works across replicas (stateless Streamable HTTP): tools, a segmentation and its resource', async () => {
    const client = new Client({ name: 'promptseg-replicas', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${proxyUrl}/mcp`)));
    hits.length = 0;
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('segment_image');
    const png = (await drawnChestRadiographPng(160, 160)).toString('base64');
    const r = (await client.callTool({ name: 'segment_image', arguments: { image: { base64: png }, prompts: ['right lung'] } })) as { isError?: boolean; structuredContent?: { results: { mask_uri: string }[] } };
    expect(r.isError).toBeFalsy();
    const res = await client.readResource({ uri: r.structuredContent!.results[0].mask_uri });
    expect(res.contents[0].mimeType).toBe('image/png');
    expect(new Set(hits).size).toBe(3);
    await client.close();
  }, 120_000);
});
