import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { OPERATIONS } from '../../src/service/operation-table.js';
import { calibrationFor } from '../../src/core/pipeline/segment.js';
import { chestLikePng, greyPng, pngHeaderOnly } from '../helpers/fixtures.js';
import { testConfig } from '../helpers/service.js';

let srv: RunningServer;
let png: Buffer;

const form = (image: Buffer | undefined, prompts: string[], extra: Record<string, string> = {}) => {
  const fd = new FormData();
  if (image) fd.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'x.png');
  for (const p of prompts) fd.append('prompt', p);
  for (const [k, v] of Object.entries(extra)) fd.append(k, v);
  return fd;
};
const post = (body: BodyInit, headers: Record<string, string> = {}) => fetch(`${srv.url}/v1/segment`, { method: 'POST', body, headers });
const json = (o: unknown) => ({ body: JSON.stringify(o), headers: { 'content-type': 'application/json' } });

async function expectProblem(res: Response, status: number, kind: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = (await res.json()) as { type: string; detail: string };
  expect(body.type).toBe(`urn:promptseg:problem:${kind}`);
  expect(body.detail).not.toMatch(/\n\s+at /); // never a stack trace
  return body;
}

beforeAll(async () => {
  srv = await startServer(testConfig({ PROMPTSEG_MAX_PROMPTS: '8', PROMPTSEG_MAX_PIXELS: '4000000', PROMPTSEG_MAX_BODY_BYTES: '2000000' }), { log: false });
  await srv.ctx.pipeline.registry.get().load();
  png = await chestLikePng(256);
});
afterAll(() => srv.close());

describe('POST /v1/segment', () => {
  it('returns a mask per prompt for a multipart upload', async () => {
    const res = await post(form(png, ['left lung', 'heart'], { outputs: 'png,rle,polygons', overlay: 'true' }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { width: number; results: { prompt: string; mask_png_base64: string; rle: { size: number[] }; verdict: string; presence: number; mask_url: string }[]; overlay_png_base64: string; timings_ms: Record<string, number> };
    expect(body.width).toBe(256);
    expect(body.results.map((r) => r.prompt)).toEqual(['left lung', 'heart']);
    for (const r of body.results) {
      expect(['accept', 'review', 'reject']).toContain(r.verdict);
      expect(r.presence).toBeGreaterThanOrEqual(0);
      expect(r.presence).toBeLessThanOrEqual(1);
      expect(Buffer.from(r.mask_png_base64, 'base64').subarray(1, 4).toString()).toBe('PNG');
      expect(r.rle.size).toEqual([256, 256]);
      const mask = await fetch(srv.url + r.mask_url);
      expect(mask.status).toBe(200);
      expect(mask.headers.get('content-type')).toBe('image/png');
    }
    // an artifact file name not of the form <index>.png is named in a 422, not looked up
    const bad = await expectProblem(await fetch(srv.url + body.results[0].mask_url.replace(/\d+\.png$/, 'first.png')), 422, 'invalid_argument');
    expect(bad.detail).toContain('<index>.png');
    expect(Buffer.from(body.overlay_png_base64, 'base64').subarray(1, 4).toString()).toBe('PNG');
    expect(Object.keys(body.timings_ms)).toEqual(expect.arrayContaining(['encode_image', 'encode_text', 'decode_mask']));
  });

  it('accepts JSON with a base64 image and reuses image features for an image_id', async () => {
    const first = await post(json({ image: { base64: png.toString('base64') }, prompts: ['lungs'] }).body, json({}).headers);
    expect(first.status).toBe(200);
    const a = (await first.json()) as { image_id: string };
    const again = await post(JSON.stringify({ image: { image_id: a.image_id }, prompts: ['heart'] }), { 'content-type': 'application/json' });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { cache: { image_features: string } }).cache.image_features).toBe('hit');
    // text-side TTA reuses the cached image features and reports the paraphrases' disagreement
    const tta = await post(JSON.stringify({ image: { image_id: a.image_id }, prompts: ['heart', 'lungs'], tta: 4 }), { 'content-type': 'application/json' });
    expect(tta.status).toBe(200);
    const tb = (await tta.json()) as { cache: { image_features: string }; result_id: string; results: { uncertainty: { tta_disagreement: number } }[] };
    expect(tb.cache.image_features).toBe('hit');
    for (const r of tb.results) expect(r.uncertainty.tta_disagreement).toBeGreaterThanOrEqual(0);
    const map = await fetch(`${srv.url}/v1/results/${tb.result_id}/uncertainty/0.png`);
    expect(map.status).toBe(200);
    const bad = await post(JSON.stringify({ image: { image_id: a.image_id }, prompts: ['heart'], tta: 99 }), { 'content-type': 'application/json' });
    expect(bad.status).toBe(422);
    const badImageTta = await post(JSON.stringify({ image: { image_id: a.image_id }, prompts: ['heart'], tta_image: 'always' }), { 'content-type': 'application/json' });
    expect(badImageTta.status).toBe(422);
    expect(JSON.stringify(await badImageTta.json())).toContain('tta_image');
  });

  it('answers 400 for an empty body', async () => {
    await expectProblem(await post('', { 'content-type': 'application/json' }), 400, 'bad_input');
  });
  it('answers 415 for a wrong content type', async () => {
    await expectProblem(await post('hello', { 'content-type': 'text/plain' }), 415, 'unsupported_format');
  });
  it('answers 400 for a truncated PNG', async () => {
    const big = await greyPng(128, 128, (x, y) => (x * 7) ^ (y * 3));
    await expectProblem(await post(form(big.subarray(0, big.length - 60), ['heart'])), 400, 'bad_input');
  });
  it('answers 400 for a 1x1 image', async () => {
    const b = await expectProblem(await post(form(await greyPng(1, 1, () => 9), ['heart'])), 400, 'bad_input');
    expect(b.detail).toContain('1x1');
  });
  it('answers 413 for a 100000x100000 PNG header without decoding it', async () => {
    const t0 = performance.now();
    await expectProblem(await post(form(pngHeaderOnly(100000, 100000), ['heart'])), 413, 'too_large');
    expect(performance.now() - t0).toBeLessThan(5000);
  });
  it('answers 413 for a body over the limit', async () => {
    await expectProblem(await post(form(Buffer.alloc(2_100_000, 1), ['heart'])), 413, 'too_large');
  });
  it('answers 404 for an unknown model', async () => {
    await expectProblem(await post(form(png, ['heart'], { model: 'no-such-model' })), 404, 'unknown_model');
  });
  it("draws each structure's mask at the threshold fitted for it on val unless the request names one", async (t) => {
    const entry = srv.ctx.pipeline.registry.entry(srv.ctx.pipeline.registry.defaultId);
    const fitted = calibrationFor(srv.ctx.pipeline, entry)?.mask_threshold ?? {};
    const slug = Object.keys(fitted)[0];
    if (!slug) return t.skip('the shipped calibration fitted no per-structure mask threshold');
    const name = srv.ctx.pipeline.vocabulary.bySlug.get(slug)!.name;
    const other = ['heart', 'left lung', 'polyp'].find((p) => !(srv.ctx.pipeline.vocabulary.match(p)!.slug in fitted))!;
    type R = { results: { mask_threshold: number; area_px: number; presence: number }[] };
    const dflt = (await (await fetch(`${srv.url}/v1/segment`, { method: 'POST', ...json({ image: { base64: png.toString('base64') }, prompts: [name, other] }) })).json()) as R;
    expect(dflt.results[0].mask_threshold).toBeCloseTo(fitted[slug], 4);
    expect(dflt.results[1].mask_threshold).toBe(0.5);
    const named = (await (await fetch(`${srv.url}/v1/segment`, { method: 'POST', ...json({ image: { base64: png.toString('base64') }, prompts: [name, other], threshold: 0.5 }) })).json()) as R;
    expect(named.results.map((r) => r.mask_threshold)).toEqual([0.5, 0.5]);
    // the same probabilities cut lower give at least as large a mask (fitted thresholds are below 0.5 or above it)
    const [lo, hi] = fitted[slug] < 0.5 ? [dflt, named] : [named, dflt];
    expect(lo.results[0].area_px).toBeGreaterThanOrEqual(hi.results[0].area_px);
    expect(dflt.results[1].area_px).toBe(named.results[1].area_px);
  });
  it('keeps only the largest connected component when asked, and says so', async () => {
    type R = { results: { area_px: number; components: number; largest_component_only?: boolean }[] };
    const ask = async (largest: string) => (await (await fetch(`${srv.url}/v1/segment`, { method: 'POST', ...json({ image: { base64: png.toString('base64') }, prompts: ['right lung'], largest_component: largest }) })).json()) as R;
    const [off, on] = [(await ask('off')).results[0], (await ask('on')).results[0]];
    expect(off.largest_component_only).toBeUndefined();
    expect(on.components).toBeLessThanOrEqual(1);
    if (off.components > 1) {
      expect(on.largest_component_only).toBe(true);
      expect(on.area_px).toBeLessThan(off.area_px);
    } else {
      expect(on.area_px).toBe(off.area_px);
    }
    await expectProblem(await fetch(`${srv.url}/v1/segment`, { method: 'POST', ...json({ image: { base64: png.toString('base64') }, prompts: ['right lung'], largest_component: 'sometimes' }) }), 422, 'invalid_argument');
  });
  it('answers 422 for an empty prompt and for too many prompts', async () => {
    await expectProblem(await post(form(png, ['   '])), 422, 'invalid_argument');
    await expectProblem(await post(form(png, Array.from({ length: 500 }, (_, i) => `p${i}`))), 422, 'invalid_argument');
    await expectProblem(await post(form(png, [])), 422, 'invalid_argument');
  });
  it('answers 400 for a form without an image and for bad base64', async () => {
    await expectProblem(await post(form(undefined, ['heart'])), 400, 'bad_input');
    await expectProblem(await post(JSON.stringify({ image: { base64: '@@@not base64@@@' }, prompts: ['heart'] }), { 'content-type': 'application/json' }), 400, 'bad_input');
  });
  it('keeps serving after all of that', async () => {
    expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
    expect((await post(form(png, ['heart']))).status).toBe(200);
  });
});

describe('read-only endpoints', () => {
  it('GET /v1/models lists the built-in model as default and installed', async () => {
    const body = (await (await fetch(`${srv.url}/v1/models`)).json()) as { default: string; models: { id: string; installed: boolean }[] };
    expect(body.default).toBe('promptseg-builtin');
    expect(body.models.find((m) => m.id === 'promptseg-builtin')?.installed).toBe(true);
  });
  it('GET /v1/models/{id} returns the model card; unknown ids are 404', async () => {
    const res = await fetch(`${srv.url}/v1/models/promptseg-builtin`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { card_markdown: string; specialists?: { name: string; structures: string[]; kind: string; used_by_default_for: string[]; own_presence: boolean; image_sets?: string[] }[] };
    expect(body.card_markdown.length).toBeGreaterThan(100);
    // the manifest's specialists, each with the structures it draws by default (a subset of its own)
    const listed = srv.ctx.pipeline.registry.entry('promptseg-builtin').specialists ?? [];
    expect((body.specialists ?? []).map((s) => s.name)).toEqual(listed.map((s) => s.name));
    for (const s of body.specialists ?? []) expect(s.used_by_default_for.every((slug) => s.structures.includes(slug))).toBe(true);
    // the all-datasets network answers for its structures always
    const all = body.specialists?.find((s) => s.own_presence);
    expect(all?.name).toBe('all-datasets');
    expect(all?.used_by_default_for).toEqual(all?.structures);
    // and on the images of the sets it was trained on, for the structures they label (the COVID-19 radiographs' lungs)
    expect(all?.image_sets).toContain('gb_covid_cxr');
    expect(body.specialists?.filter((s) => !s.own_presence).every((s) => s.image_sets === undefined)).toBe(true);
    expect(body.specialists?.filter((s) => !s.own_presence).map((s) => s.name).sort()).toEqual(['cardiac-mri-unet', 'chest-radiograph-unet', 'covid-radiograph-unet', 'ct-covid-infection-unet', 'ct-pulmonary-angiography-unet', 'dental-caries-unet', 'em', 'foot-ulcer', 'histology-nuclei-unet', 'left-atrium', 'lumbar-spine-unet', 'optic-nerve-head-unet', 'polyp', 'retinal-vessels-unet']);
    // the Drishti-GS1, JSRT, ACDC, FUMPE, COVID-19 CT, COVID-19 radiograph, DRIVE, lumbar spine MRI, DC1000 and MoNuSeg U-Nets are task-specific networks, the others the model's own networks fine-tuned
    expect(body.specialists?.filter((s) => s.kind === 'task-specific').map((s) => s.name).sort()).toEqual(['cardiac-mri-unet', 'chest-radiograph-unet', 'covid-radiograph-unet', 'ct-covid-infection-unet', 'ct-pulmonary-angiography-unet', 'dental-caries-unet', 'histology-nuclei-unet', 'lumbar-spine-unet', 'optic-nerve-head-unet', 'retinal-vessels-unet']);
    expect(body.specialists?.filter((s) => s.kind === 'fine-tuned').length).toBe(listed.length - 10);
    await expectProblem(await fetch(`${srv.url}/v1/models/nope`), 404, 'unknown_model');
  });
  it('GET /v1/structures filters by modality; an unknown modality is 404', async () => {
    const body = (await (await fetch(`${srv.url}/v1/structures?modality=xray`)).json()) as { structures: { slug: string; modality: string; modalities: string[] }[] };
    expect(body.structures.map((s) => s.slug)).toContain('left_lung');
    expect(body.structures.every((s) => s.modalities.includes('xray'))).toBe(true);
    // a structure seen in two modalities (ground-glass opacity on CT and on radiographs) is listed under both
    expect(body.structures.find((s) => s.slug === 'ground_glass_opacity')?.modalities).toEqual(['ct', 'xray']);
    expect(body.structures.map((s) => s.slug)).not.toContain('liver');
    await expectProblem(await fetch(`${srv.url}/v1/structures?modality=sonar`), 404, 'unknown_structure');
  });
  it('GET /healthz, /readyz and /metrics answer', async () => {
    expect(((await (await fetch(`${srv.url}/healthz`)).json()) as { status: string }).status).toBe('ok');
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    expect(m).toMatch(/promptseg_process_resident_memory_bytes \d+/);
    expect(m).toMatch(/promptseg_op_segment_total \d+/);
  });
  it('GET / serves the web page and /docs the API reference', async () => {
    expect(await (await fetch(`${srv.url}/`)).text()).toContain('<form id="form">');
    expect(await (await fetch(`${srv.url}/docs`)).text()).toContain('/v1/segment');
  });
  it('unknown routes are problem+json 404s', async () => {
    const res = await fetch(`${srv.url}/v2/nothing`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });
});

describe('OpenAPI document', () => {
  it('has exactly one operation per entry of the operation table, with the same schemas', async () => {
    const doc = (await (await fetch(`${srv.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { operationId: string }>> };
    const ops = Object.entries(doc.paths).flatMap(([p, methods]) => Object.entries(methods).map(([m, o]) => ({ id: o.operationId, method: m, path: p })));
    expect(ops.map((o) => o.id).sort()).toEqual(OPERATIONS.map((o) => o.name).sort());
    for (const op of OPERATIONS) expect(ops).toContainEqual({ id: op.name, method: op.http.method, path: op.http.path });
  });
});

describe('bearer-token auth', () => {
  let locked: RunningServer;
  beforeAll(async () => {
    locked = await startServer(testConfig({ PROMPTSEG_API_TOKENS: 'secret-token-1,secret-token-2' }), { log: false, warm: false });
  });
  afterAll(() => locked.close());
  it('refuses a missing or wrong token with 401 and accepts a right one', async () => {
    await expectProblem(await fetch(`${locked.url}/v1/models`), 401, 'unauthorized');
    await expectProblem(await fetch(`${locked.url}/v1/models`, { headers: { authorization: 'Bearer wrong' } }), 401, 'unauthorized');
    expect((await fetch(`${locked.url}/v1/models`, { headers: { authorization: 'Bearer secret-token-2' } })).status).toBe(200);
    expect((await fetch(`${locked.url}/healthz`)).status).toBe(200);
  });
});

describe('DICOM through the HTTP API', () => {
  it('segments a CT slice given in Hounsfield units; areas come in mm² from the pixel spacing', async () => {
    const { ctSliceHu } = await import('../helpers/dicom-fixtures.js');
    const ct = ctSliceHu(128, 0.7);
    const fd = new FormData();
    fd.append('image', new Blob([new Uint8Array(ct.bytes)], { type: 'application/dicom' }), 'ct.dcm');
    fd.append('prompt', 'lungs');
    fd.append('prompt', 'heart');
    const res = await fetch(`${srv.url}/v1/segment`, { method: 'POST', body: fd });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { width: number; results: { area_px: number; area_mm2: number }[] };
    expect(body.width).toBe(128);
    for (const r of body.results) expect(r.area_mm2).toBeCloseTo(r.area_px * 0.49, 2);
  });

  it('segments a MONOCHROME1 X-ray and an RGB secondary capture; the X-ray area uses the imager pixel spacing', async () => {
    const { xrayMonochrome1, rgbSecondaryCapture } = await import('../helpers/dicom-fixtures.js');
    for (const [bytes, spacing] of [[xrayMonochrome1(96).bytes, 0.04], [rgbSecondaryCapture(80, 64).bytes, null]] as const) {
      const res = await post(JSON.stringify({ image: { base64: bytes.toString('base64') }, prompts: ['lungs', 'skin lesion'] }), { 'content-type': 'application/json' });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { area_px: number; area_mm2: number | null }[] };
      for (const r of body.results) {
        if (spacing === null) expect(r.area_mm2).toBeNull();
        else expect(r.area_mm2).toBeCloseTo(r.area_px * spacing, 3);
      }
    }
  });

  it('answers 415 naming the transfer syntax for a JPEG 2000 DICOM', async () => {
    const { writeDicom } = await import('../helpers/dicom-fixtures.js');
    const f = writeDicom({ Modality: 'OT', Rows: 16, Columns: 16, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: new Uint8Array(256).buffer, _vrMap: { PixelData: 'OB' } }, '1.2.840.10008.1.2.4.91');
    const res = await post(JSON.stringify({ image: { base64: f.bytes.toString('base64') }, prompts: ['heart'] }), { 'content-type': 'application/json' });
    const b = await expectProblem(res, 415, 'unsupported_format');
    expect(b.detail).toContain('1.2.840.10008.1.2.4.91');
  });
});

describe('overload and shutdown', () => {
  it('answers 503 with Retry-After when the inference queue is full, and keeps serving', async () => {
    const small = await startServer(testConfig({ PROMPTSEG_QUEUE_SIZE: '0', PROMPTSEG_CONCURRENCY: '1' }), { log: false });
    await small.ctx.pipeline.registry.get().load();
    const big = (await greyPng(512, 512, (x, y) => (x * y) % 251)).toString('base64');
    const req = () => fetch(`${small.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: big }, prompts: ['lungs', 'heart', 'liver'] }) });
    const res = await Promise.all([req(), req(), req(), req()]);
    const codes = res.map((r) => r.status).sort();
    expect(codes).toContain(200);
    expect(codes).toContain(503);
    const busy = res.find((r) => r.status === 503)!;
    expect(busy.headers.get('retry-after')).toBeTruthy();
    expect(((await busy.json()) as { type: string }).type).toBe('urn:promptseg:problem:overloaded');
    expect((await req()).status).toBe(200);
    await small.close();
  });

  it('finishes in-flight requests on shutdown and takes no new ones', async () => {
    const s = await startServer(testConfig(), { log: false });
    await s.ctx.pipeline.registry.get().load();
    const big = (await greyPng(512, 512, (x, y) => (x + 3 * y) % 253)).toString('base64');
    const inflight = fetch(`${s.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: { base64: big }, prompts: ['lungs', 'heart'] }) });
    await new Promise((r) => setTimeout(r, 30));
    const closing = s.close();
    // a new request during the drain: refused at the socket, or (on a kept-alive socket) told the server is draining
    const after = await fetch(`${s.url}/healthz`).then(async (r) => ((await r.json()) as { status: string }).status, () => 'refused');
    expect(['draining', 'refused']).toContain(after);
    const seg = await fetch(`${s.url}/v1/models`).then((r) => r.status, () => 'refused');
    expect([503, 'refused']).toContain(seg);
    expect((await inflight).status).toBe(200);
    await closing;
    expect(await fetch(`${s.url}/healthz`).then((r) => r.status, () => 'refused')).toBe('refused');
  });
});

describe('DICOM SEG download', () => {
  it('serves a DICOM SEG for a result made from DICOM, and refuses one for a PNG result', async () => {
    const { ctSliceHu } = await import('../helpers/dicom-fixtures.js');
    const dicomParser = (await import('dicom-parser')).default;
    const ct = ctSliceHu(128, 0.7);
    const res = await post(JSON.stringify({ image: { base64: ct.bytes.toString('base64') }, prompts: ['lungs', 'heart', 'liver', 'lung infection'], threshold: 0.2 }), { 'content-type': 'application/json' });
    const body = (await res.json()) as { result_id: string; results: { mask_produced: boolean; dicom_seg_url: string }[] };
    const produced = body.results.filter((r) => r.mask_produced).length;
    const seg = await fetch(srv.url + body.results[0].dicom_seg_url);
    if (produced === 0) {
      await expectProblem(seg, 422, 'invalid_argument');
    } else {
      expect(seg.status).toBe(200);
      const ds = dicomParser.parseDicom(new Uint8Array(await seg.arrayBuffer()));
      expect(ds.intString('x00280008')).toBe(produced);
      expect(ds.elements.x00081115.items![0].dataSet!.string('x0020000e')).toBe(ct.seriesUid);
    }
    const pngRes = (await (await post(form(png, ['heart']))).json()) as { result_id: string };
    await expectProblem(await fetch(`${srv.url}/v1/results/${pngRes.result_id}/dicom-seg`), 422, 'invalid_argument');
  });
});
