import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { OPERATIONS } from '../../src/service/operation-table.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { ctSliceHu, rgbSecondaryCapture, xrayMonochrome1 } from '../helpers/dicom-fixtures.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';
import { testConfig } from '../helpers/service.js';
import { ROOT } from '../helpers/project.js';

const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-mcp-'));
const imagePath = path.join(dir, 'chest.png');
const dicomPath = path.join(dir, 'ct.dcm');
const volumePath = path.join(dir, 'vol.nii.gz');
const xrayPath = path.join(dir, 'xr.dcm');
const rgbPath = path.join(dir, 'sc.dcm');
const CLI = path.join(ROOT, 'dist', 'main', 'cli.js');

/** A POST with exactly the given Host and Origin headers (fetch would rewrite them). */
function rawPost(url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
}

type ToolResult = { isError?: boolean; content: { type: string; text?: string; data?: string; uri?: string }[]; structuredContent?: Record<string, unknown> };

/** The checks both transports must pass, on a connected client. */
function sharedBehaviour(getClient: () => Client) {
  it('lists one tool per operation, with snake_case names and object input schemas', async () => {
    const { tools } = await getClient().listTools();
    const expected = OPERATIONS.map((o) => o.mcpName ?? o.name).sort();
    expect(tools.map((t) => t.name).sort()).toEqual(expected);
    for (const t of tools) {
      expect(t.name).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(t.inputSchema.type).toBe('object');
      expect(t.description!.length).toBeGreaterThan(40);
    }
  });

  it('segment_image by path returns a summary, a small preview and a mask resource of the right size', async () => {
    const r = (await getClient().callTool({ name: 'segment_image', arguments: { image: { path: imagePath }, prompts: ['left lung', 'banana'] } })) as ToolResult;
    expect(r.isError).toBeFalsy();
    expect(r.content[0].type).toBe('text');
    expect(r.content[0].text).toContain('left lung');
    const img = r.content.find((c) => c.type === 'image');
    expect(img).toBeDefined();
    const meta = await sharp(Buffer.from(img!.data!, 'base64')).metadata();
    expect(Math.max(meta.width!, meta.height!)).toBeLessThanOrEqual(384);
    const sc = r.structuredContent as { width: number; results: { mask_uri: string; verdict: string; mask_png_base64?: string }[] };
    expect(sc.results).toHaveLength(2);
    expect(sc.results[0].mask_png_base64).toBeUndefined(); // full masks never inline
    const res = await getClient().readResource({ uri: sc.results[0].mask_uri });
    const blob = (res.contents[0] as { blob: string; mimeType: string });
    expect(blob.mimeType).toBe('image/png');
    const m = await sharp(Buffer.from(blob.blob, 'base64')).metadata();
    expect([m.width, m.height]).toEqual([256, 256]);
  });

  it('segment_image reads a DICOM CT by path and reports areas in mm²', async () => {
    const r = (await getClient().callTool({ name: 'segment_image', arguments: { image: { path: dicomPath }, prompts: ['lungs'] } })) as ToolResult;
    expect(r.isError).toBeFalsy();
    const res = (r.structuredContent as { results: { area_px: number; area_mm2: number }[] }).results[0];
    expect(res.area_mm2).toBeCloseTo(res.area_px * 0.49, 2);
    for (const p of [xrayPath, rgbPath]) {
      const x = (await getClient().callTool({ name: 'segment_image', arguments: { image: { path: p }, prompts: ['heart'] } })) as ToolResult;
      expect(x.isError).toBeFalsy();
    }
  });

  it('segment_volume reads a NIfTI volume by path; its mask resource is a NIfTI with the same dims', async () => {
    const r = (await getClient().callTool({ name: 'segment_volume', arguments: { image: { path: volumePath }, prompts: ['liver'] } })) as ToolResult;
    expect(r.isError).toBeFalsy();
    const sc = r.structuredContent as { dims: number[]; results: { mask_uri: string }[] };
    expect(sc.dims).toEqual([48, 40, 3]);
    const res = await getClient().readResource({ uri: sc.results[0].mask_uri });
    const blob = res.contents[0] as { blob: string; mimeType: string };
    expect(blob.mimeType).toBe('application/gzip');
    const raw = gunzipSync(Buffer.from(blob.blob, 'base64'));
    expect([raw.readInt16LE(42), raw.readInt16LE(44), raw.readInt16LE(46)]).toEqual([48, 40, 3]);
  });

  it('bad arguments come back as tool errors and the server keeps serving', async () => {
    const c = getClient();
    const calls = [
      { image: {}, prompts: ['heart'] },
      { image: { path: '/etc/passwd' }, prompts: ['heart'] },
      { image: { path: imagePath }, prompts: ['heart'], model: 'no-such-model' },
      { image: { base64: 'A'.repeat(6_900_000) }, prompts: ['heart'] },
    ];
    const messages: string[] = [];
    for (const args of calls) {
      const r = (await c.callTool({ name: 'segment_image', arguments: args })) as ToolResult;
      expect(r.isError).toBe(true);
      messages.push(r.content[0].text!);
    }
    expect(messages[0]).toMatch(/exactly one of image/);
    expect(messages[1]).toMatch(/no readable image file at \/etc\/passwd inside the allowed roots/);
    expect(messages[2]).toMatch(/no model "no-such-model"/);
    expect(messages[3]).toMatch(/over \d+ bytes/);
    const missing = (await c.callTool({ name: 'segment_image', arguments: { prompts: ['heart'] } })) as ToolResult;
    expect(missing.isError).toBe(true);
    const structures = (await c.callTool({ name: 'list_structures', arguments: { modality: 'sonar' } })) as ToolResult;
    expect(structures.isError).toBe(true);
    expect(structures.content[0].text).toMatch(/unknown_structure/);
    const ok = (await c.callTool({ name: 'list_structures', arguments: { modality: 'xray' } })) as ToolResult;
    expect(ok.isError).toBeFalsy();
  });

  it('assess_segmentation and compare_prompts work on an earlier result', async () => {
    const c = getClient();
    const seg = (await c.callTool({ name: 'segment_image', arguments: { image: { path: imagePath }, prompts: ['heart'] } })) as ToolResult;
    const sc = seg.structuredContent as { result_id: string; image_id: string };
    const a = (await c.callTool({ name: 'assess_segmentation', arguments: { result_id: sc.result_id, index: 0 } })) as ToolResult;
    expect(a.isError).toBeFalsy();
    expect((a.structuredContent as { uncertainty_map_uri: string }).uncertainty_map_uri).toContain(sc.result_id);
    const cmp = (await c.callTool({ name: 'compare_prompts', arguments: { image: { image_id: sc.image_id }, prompts: ['heart', 'cardiac silhouette'] } })) as ToolResult;
    expect(cmp.isError).toBeFalsy();
    expect((cmp.structuredContent as { pairs: unknown[] }).pairs).toHaveLength(1);
  });

  it('offers the workflow prompts from prompts/', async () => {
    const { prompts } = await getClient().listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(['check_finding', 'measure_structure', 'segment_and_describe']);
    const p = await getClient().getPrompt({ name: 'segment_and_describe', arguments: { structure: 'heart' } });
    expect((p.messages[0].content as { text: string }).text).toContain('"heart"');
  });
}

beforeAll(async () => {
  writeFileSync(imagePath, await chestLikePng(256));
  writeFileSync(dicomPath, ctSliceHu(128, 0.7).bytes);
  writeFileSync(xrayPath, xrayMonochrome1(96).bytes);
  writeFileSync(rgbPath, rgbSecondaryCapture(80, 64).bytes);
  writeFileSync(volumePath, niftiVolume([48, 40, 3], [0.9, 0.9, 2.5], { gzip: true }).bytes);
});

describe('MCP over stdio (spawned CLI)', () => {
  let client: Client;
  let stderr = '';
  beforeAll(async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'mcp'],
      env: { ...process.env, PROMPTSEG_ALLOWED_ROOTS: dir, PROMPTSEG_MAX_BODY_BYTES: '5000000' } as Record<string, string>,
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    client = new Client({ name: 'promptseg-test', version: '1.0.0' });
    await client.connect(transport);
  });
  afterAll(() => client?.close());
  sharedBehaviour(() => client);
  it('tells the agent how to use it', () => {
    expect(client.getInstructions()).toMatch(/verdict/);
    expect(stderr).toContain('MCP server ready');
  });
});

describe('MCP stdio framing', () => {
  it('writes nothing but JSON-RPC frames to stdout', async () => {
    const child = spawn(process.execPath, [CLI, 'mcp'], { env: { ...process.env, PROMPTSEG_ALLOWED_ROOTS: dir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const send = (m: object) => child.stdin.write(JSON.stringify(m) + '\n');
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'segment_image', arguments: { image: { path: imagePath }, prompts: ['heart'] } } });
    send({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'segment_image', arguments: { image: { path: '/nope.png' }, prompts: ['heart'] } } });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !(/"id":4/.test(out) && /"id":3/.test(out))) await new Promise((r) => setTimeout(r, 100));
    child.kill();
    const lines = out.split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ jsonrpc: '2.0' });
  });
});

describe('MCP over Streamable HTTP (/mcp on the Hono server)', () => {
  let srv: RunningServer;
  let client: Client;
  beforeAll(async () => {
    srv = await startServer(testConfig({ PROMPTSEG_ALLOWED_ROOTS: dir, PROMPTSEG_API_TOKENS: 'tok-123', PROMPTSEG_MAX_BODY_BYTES: '5000000' }), { log: false });
    client = new Client({ name: 'promptseg-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${srv.url}/mcp`), { requestInit: { headers: { authorization: 'Bearer tok-123' } } }));
  });
  afterAll(async () => {
    await client?.close();
    await srv?.close();
  });
  sharedBehaviour(() => client);
  it('refuses requests without the token, from foreign origins and hosts', async () => {
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    expect((await fetch(`${srv.url}/mcp`, { method: 'POST', body: init, headers: h })).status).toBe(401);
    expect(await rawPost(`${srv.url}/mcp`, init, { ...h, authorization: 'Bearer tok-123', origin: 'http://evil.example' })).toBe(403);
    expect(await rawPost(`${srv.url}/mcp`, init, { ...h, authorization: 'Bearer tok-123', host: 'evil.example' })).toBe(403);
    // another local site is another origin: it needs PROMPTSEG_CORS_ORIGINS; the server's own page is accepted
    expect(await rawPost(`${srv.url}/mcp`, init, { ...h, authorization: 'Bearer tok-123', origin: 'http://localhost:3000' })).toBe(403);
    expect(await rawPost(`${srv.url}/mcp`, init, { ...h, authorization: 'Bearer tok-123', origin: srv.url })).toBe(200);
  });
  it('reports progress when the client sends a progress token', async () => {
    const seen: number[] = [];
    await client.callTool({ name: 'segment_image', arguments: { image: { path: imagePath }, prompts: ['heart'] } }, undefined, { onprogress: (p) => seen.push(p.progress) });
    expect(seen.length).toBeGreaterThanOrEqual(2);
  });
});
