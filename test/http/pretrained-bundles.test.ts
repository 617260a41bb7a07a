import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { greyPng } from '../helpers/fixtures.js';
import { testConfig } from '../helpers/service.js';
import { ROOT, TINY_MANIFEST } from '../helpers/project.js';

// pretrained bundles through both front doors, on the tiny test bundles (models/tiny)
let srv: RunningServer;
let b64 = '';
let b64bio = '';
const W = 180, H = 120;
const post = (route: string, body: unknown) => fetch(`${srv.url}${route}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
type Out = { results: { prompt: string; mask_url: string; mask_uri: string; area_px: number; bbox: number[] | null; predicted_quality: number; verdict: string; refined_by?: { model: string; box: number[] } }[]; model: string; image_id: string };

beforeAll(async () => {
  srv = await startServer(testConfig({ PROMPTSEG_EXTRA_MANIFESTS: TINY_MANIFEST }), { log: false });
  // the picture on which the tiny BiomedCLIP finds "polyp" present (its weights are random but fixed)
  const px = Buffer.alloc(160 * 160 * 3);
  for (let y = 0; y < 160; y++) for (let x = 0; x < 160; x++) px.fill(x >= 50 && x < 110 && y >= 40 && y < 120 ? 220 : 40 + ((x * 7 + y * 3) % 20), (y * 160 + x) * 3, (y * 160 + x) * 3 + 3);
  b64bio = (await sharp(px, { raw: { width: 160, height: 160, channels: 3 } }).png().toBuffer()).toString('base64');
  b64 = (await greyPng(W, H, (x, y) => (x > 40 && x < 140 && y > 30 && y < 90 ? 210 : 50))).toString('base64');
});
afterAll(() => srv.close());

describe('pretrained bundles over HTTP', () => {
  it('GET /v1/models lists text and region models', async () => {
    const body = (await (await fetch(`${srv.url}/v1/models`)).json()) as { models: { id: string; kind: string; installed: boolean }[] };
    const kinds = Object.fromEntries(body.models.map((m) => [m.id, m.kind]));
    expect(kinds).toMatchObject({ 'promptseg-builtin': 'text', 'clipseg-tiny': 'text', 'biomedclip-tiny': 'text', 'slimsam-tiny': 'region' });
    expect(body.models.find((m) => m.id === 'slimsam-tiny')!.installed).toBe(true);
  });

  it('POST /v1/segment-region: a box gives a mask inside it, downloadable at full size', async () => {
    const res = await post('/v1/segment-region', { image: { base64: b64 }, regions: [{ box: [40, 30, 140, 90] }, { points: [[90, 60, 1]] }], model: 'slimsam-tiny' });
    expect(res.status).toBe(200);
    const out = (await res.json()) as Out;
    expect(out.model).toBe('slimsam-tiny');
    const [bx, by, bw, bh] = out.results[0].bbox!;
    expect(bx).toBeGreaterThanOrEqual(38);
    expect(by).toBeGreaterThanOrEqual(28);
    expect(bx + bw).toBeLessThanOrEqual(143);
    expect(by + bh).toBeLessThanOrEqual(93);
    expect(out.results[0].area_px).toBeGreaterThan(0.8 * 100 * 60);
    expect(out.results[1].prompt).toBe('points (90, 60)');
    const png = await fetch(`${srv.url}${out.results[0].mask_url}`);
    const meta = await sharp(Buffer.from(await png.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
  });

  it('GET /v1/models/{id} shows the inputs each installed graph declares, and a box to a points-only export is a 422 naming them', async () => {
    const pb = (await (await fetch(`${srv.url}/v1/models/slimsam-tiny`)).json()) as { graph_inputs: Record<string, { name: string; shape: (number | string)[] }[]> };
    const dec = pb.graph_inputs['onnx/prompt_encoder_mask_decoder.onnx'];
    expect(dec.map((i) => i.name)).toEqual(['image_embeddings', 'image_positional_embeddings', 'input_points', 'input_labels', 'input_boxes']);
    expect(dec.find((i) => i.name === 'input_boxes')!.shape).toEqual([1, 'boxes', 4]);
    expect(pb.graph_inputs['onnx/vision_encoder.onnx'].map((i) => i.name)).toEqual(['pixel_values']);
    const main = (await (await fetch(`${srv.url}/v1/models/slimsam-tiny-points`)).json()) as { graph_inputs: Record<string, { name: string }[]> };
    expect(main.graph_inputs['onnx/prompt_encoder_mask_decoder.onnx'].map((i) => i.name)).not.toContain('input_boxes');
    const res = await post('/v1/segment-region', { image: { base64: b64 }, regions: [{ box: [40, 30, 140, 90] }], model: 'slimsam-tiny-points' });
    expect(res.status).toBe(422);
    const p = (await res.json()) as { detail: string; field: string };
    expect(p.field).toBe('regions[0].box');
    expect(p.detail).toMatch(/no input_boxes/);
  });

  it('refuses bad region requests with a problem naming the field', async () => {
    const outside = await post('/v1/segment-region', { image: { base64: b64 }, regions: [{ box: [0, 0, 500, 50] }], model: 'slimsam-tiny' });
    expect(outside.status).toBe(422);
    expect(((await outside.json()) as { detail: string }).detail).toMatch(/outside the 180x120 image/);
    const label = await post('/v1/segment-region', { image: { base64: b64 }, regions: [{ points: [[5, 5, 7]] }] });
    expect(label.status).toBe(422);
    expect(((await label.json()) as { detail: string }).detail).toMatch(/regions/);
    const textModel = await post('/v1/segment-region', { image: { base64: b64 }, regions: [{ box: [1, 1, 9, 9] }], model: 'clipseg-tiny' });
    expect(textModel.status).toBe(422);
    const regionAsText = await post('/v1/segment', { image: { base64: b64 }, prompts: ['polyp'], model: 'slimsam-tiny' });
    expect(regionAsText.status).toBe(422);
    expect(((await regionAsText.json()) as { detail: string }).detail).toMatch(/segment_region/);
  });

  it('POST /v1/segment serves CLIPSeg and BiomedCLIP+SAM bundles; refine: none turns the default refinement off', async () => {
    const clip = await post('/v1/segment', { image: { base64: b64 }, prompts: ['polyp', 'left lung'], model: 'clipseg-tiny' });
    expect(clip.status).toBe(200);
    expect(((await clip.json()) as Out).model).toBe('clipseg-tiny');
    const bio = await post('/v1/segment', { image: { base64: b64bio }, prompts: ['polyp', 'left lung'], model: 'biomedclip-tiny' });
    expect(bio.status).toBe(200);
    const drawn = ((await bio.json()) as Out).results.filter((r) => r.area_px > 0);
    expect(drawn.length).toBeGreaterThan(0);
    for (const r of drawn) expect(r.refined_by?.model).toBe('slimsam-tiny');
    const none = await post('/v1/segment', { image: { base64: b64 }, prompts: ['polyp'], model: 'biomedclip-tiny', refine: 'none' });
    expect(((await none.json()) as Out).results[0].refined_by).toBeUndefined();
  });
});

async function mcpChecks(client: Client) {
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === 'segment_region')!;
  expect(tool.description).toMatch(/box/);
  expect(JSON.stringify(tool.inputSchema)).toContain('regions');
  const r = (await client.callTool({ name: 'segment_region', arguments: { image: { base64: b64 }, regions: [{ box: [40, 30, 140, 90] }], model: 'slimsam-tiny' } })) as {
    isError?: boolean;
    content: { type: string; text?: string }[];
    structuredContent?: Out;
  };
  expect(r.isError).toBeFalsy();
  expect(r.content[0].text).toContain('box [40, 30, 140, 90]');
  expect(r.structuredContent!.results[0].area_px).toBeGreaterThan(4000);
  const bad = (await client.callTool({ name: 'segment_region', arguments: { image: { base64: b64 }, regions: [{ box: [90, 30, 10, 90] }], model: 'slimsam-tiny' } })) as { isError?: boolean; content: { text?: string }[] };
  expect(bad.isError).toBe(true);
  expect(bad.content[0].text).toMatch(/x2 > x1/);
  const text = (await client.callTool({ name: 'segment_image', arguments: { image: { base64: b64 }, prompts: ['polyp'], model: 'biomedclip-tiny' } })) as { isError?: boolean; structuredContent?: Out };
  expect(text.isError).toBeFalsy();
  expect(text.structuredContent!.model).toBe('biomedclip-tiny');
}

describe('pretrained bundles over MCP', () => {
  it('Streamable HTTP: segment_region with a box, errors as tool errors, a BiomedCLIP+SAM text prompt', async () => {
    const client = new Client({ name: 'promptseg-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${srv.url}/mcp`)));
    try {
      await mcpChecks(client);
    } finally {
      await client.close();
    }
  });

  it('stdio: the same through the spawned CLI', async () => {
    const client = new Client({ name: 'promptseg-test', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [path.join(ROOT, 'dist', 'main', 'cli.js'), 'mcp'], env: { ...process.env, PROMPTSEG_EXTRA_MANIFESTS: TINY_MANIFEST } as Record<string, string>, stderr: 'pipe' }));
    try {
      await mcpChecks(client);
    } finally {
      await client.close();
    }
  });
});
