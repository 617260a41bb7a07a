/**
 * npm run bench: starts the server in this process and measures, in one run, the model's own stage
 * times and the HTTP latency around them, for a 512 px image, and prints each HTTP figure as a ratio
 * to the model time it contains (the machine's noise cancels in a ratio):
 *   - a further prompt on the same image (cached image features, text embedding not cached)
 *     against the text encoder + mask decoder;
 *   - the first prompt on a new image against image encoder + text encoder + mask decoder + PNG decode;
 *     (these and the figures below ask structures the model's own network answers for everywhere:
 *     heart, lungs, clavicles; a structure two networks answer for, the left lung, is reported apart
 *     with the network the image was routed to: the all-datasets network adds its image encoder;
 *     all of them ask with the specialist off: the chest U-Net's redraw of the lungs, which the
 *     calibration chose, is timed below with the other added passes);
 *   - further prompts of structures whose calibration adds passes ('auto': specialist, second look,
 *     image copies), reported apart;
 *   - requests per second with 4 concurrent clients (new image + 2 prompts), and with
 *     BENCH_BASELINE=<commit> the same against that commit's server (a built git worktree), in turns;
 *   - the CLIPSeg peer (rd64-refined architecture, random weights; clipseg-peer.ts) and the
 *     built-in model through the same pipeline, one new image and 1, 4 and 8 prompts.
 * Prints figures; asserts nothing.
 */
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig, PROJECT_ROOT } from '../config/env.js';
import { decodeImage } from '../core/image/decode.js';
import type { RasterImage } from '../core/image/raster.js';
import { segment } from '../core/pipeline/segment.js';
import { startServer } from '../main/serve.js';
import { startBaselineServer } from './baseline-server.js';
import { openClipsegPeer } from './clipseg-peer.js';
import { benchImage, fmt, machine, percentileOf } from './bench-helpers.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const SIZE = 512;
const PEER_DIR = process.env.BENCH_PEER_DIR ?? path.join(PROJECT_ROOT, 'models', '.peer', 'clipseg-rd64-full');
const p50 = (v: number[]) => percentileOf(v, 50);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
/** The figures against the model's own times ask without the calibration's redrawing specialists (the chest U-Net redraws the lungs and clavicles): those are timed apart, with the other structures whose calibration adds passes. */
const OWN = { specialist: 'off' } as const;

/** A colonoscopy-like view: a red field in a black vignette with a paler bump (what the model calls a polyp). */
async function colonoscopyLikePng(variant: number): Promise<Buffer> {
  const W = 384, H = 320, rgb = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const grain = (Math.imul(x * 131 + y * 7 + variant * 977, 0x9e3779b1) >>> 29) - 3;
      const c = Math.hypot(x - 192, y - 160) > 176 ? [0, 0, 0] : Math.hypot(x - 240, y - 128) < 40 ? [220, 140, 120] : [170, 80, 70];
      rgb.set(c.map((v) => Math.max(0, Math.min(255, v + (v ? grain : 0)))), (y * W + x) * 3);
    }
  }
  return sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

/** A fundus-like view: an orange-red retina in a black field with a pale optic disc and a paler cup (the optic disc's redraw runs where calibration chose it). */
async function fundusLikePng(variant: number): Promise<Buffer> {
  const W = 512, H = 512, rgb = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const r = Math.hypot(x - 256 - variant, y - 256 + variant);
      const c = Math.hypot(x - 256, y - 256) > 240 ? [0, 0, 0] : r < 22 ? [250, 230, 180] : r < 48 ? [235, 180, 110] : [190, 80, 40];
      rgb.set(c, (y * W + x) * 3);
    }
  }
  return sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

/** A histology-like field of dark nuclei on a pale background (tiled prompts). */
async function histologyLikePng(variant: number): Promise<Buffer> {
  const W = 512, H = 512, rgb = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const nucleus = ((x + variant) % 29 - 14) ** 2 + ((y + 2 * variant) % 23 - 11) ** 2 < 36;
      rgb.set(nucleus ? [90, 40, 130] : [235, 190, 220], (y * W + x) * 3);
    }
  }
  return sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

type Post = (url: string, body: object) => Promise<{ ms: number; j: { image_id: string; results: { specialist?: string; zoomed?: boolean; mode: string }[]; tta?: { image_transforms: string[] } } }>;
type Pipeline = Awaited<ReturnType<typeof startServer>>['ctx']['pipeline'];
type Model = ReturnType<Pipeline['registry']['get']>;

/** POST /v1/segment, timed from the client; a status other than 200 is an error. */
const post: Post = async (url, body) => {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = (await r.json()) as Awaited<ReturnType<Post>>['j'];
  if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(j)}`);
  return { ms: performance.now() - t0, j };
};

/** The model's own stage times, in this process: PNG decode, image encoder, text encoder (a new text each time: no cache), mask decoder. */
async function modelStageTimes(model: Model, limits: { maxPixels: number }) {
  const s = model.entry.input.size;
  const enc: number[] = [], txt: number[] = [], dec: number[] = [], png: number[] = [];
  const names = ['left lung', 'heart', 'right lung', 'left clavicle', 'lungs', 'right clavicle'];
  let feats = await model.encodeImage(new Uint8Array(3 * s * s).fill(100));
  await model.decode(feats, await model.encodeText(['warm-up']));
  for (let i = 0; i < ROUNDS * 2; i++) {
    const bytes = await benchImage(SIZE, 5000 + i);
    let t = performance.now();
    const img = await decodeImage(bytes, limits);
    png.push(performance.now() - t);
    const px = new Uint8Array(3 * s * s).map((_, q) => img.data[q % img.data.length]);
    t = performance.now();
    feats = await model.encodeImage(px);
    enc.push(performance.now() - t);
    t = performance.now();
    const e = await model.encodeText([`${names[i % names.length]} ${i}`]);
    txt.push(performance.now() - t);
    t = performance.now();
    await model.decode(feats, e);
    dec.push(performance.now() - t);
  }
  return { enc, txt, dec, png, textDecoder: p50(txt.map((v, i) => v + dec[i])), firstModel: p50(enc.map((v, i) => v + txt[i] + dec[i] + png[i])) };
}

/** Over HTTP: the first prompt on a new image, then further prompts on it (text embeddings not cached, as in the model figure). */
async function promptLatency(url: string, pipeline: Pipeline) {
  const further = ['lungs', 'left clavicle', 'right clavicle', 'heart'];
  await post(url, { image: { base64: (await benchImage(SIZE, 999)).toString('base64') }, prompts: ['heart'], ...OWN });
  const first: number[] = [], next: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const img = (await benchImage(SIZE, i)).toString('base64');
    pipeline.textCache.clear();
    const a = await post(url, { image: { base64: img }, prompts: ['heart'], ...OWN });
    first.push(a.ms);
    for (const p of further) {
      pipeline.textCache.clear();
      next.push((await post(url, { image: { image_id: a.j.image_id }, prompts: [p], ...OWN })).ms);
    }
  }
  return { first, next };
}

/** A structure two networks answer for (the left lung), first prompt on a new image, and the network the image was routed to when not the model's own. */
async function routedLatency(url: string, pipeline: Pipeline) {
  const routed: number[] = [];
  let routedTo: string | undefined;
  for (let i = 0; i < ROUNDS; i++) {
    pipeline.textCache.clear();
    const a = await post(url, { image: { base64: (await benchImage(SIZE, 500 + i)).toString('base64') }, prompts: ['left lung'], ...OWN });
    routed.push(a.ms);
    routedTo ??= a.j.results[0].specialist;
  }
  return { routed, routedTo };
}

/** Further prompts of structures whose calibration adds passes ('auto'), each with the passes it ran. */
async function autoPassRows(url: string): Promise<string[]> {
  const rows: string[] = [];
  const chestLikePng = (i: number) => benchImage(SIZE, 8000 + i);
  for (const [label, make, prompt] of [['both lungs, chest-like 512x512', chestLikePng, 'lungs'], ['polyp, colonoscopy-like 384x320', colonoscopyLikePng, 'polyp'], ['optic disc, fundus-like 512x512', fundusLikePng, 'optic disc'], ['cell nuclei, histology-like 512x512', histologyLikePng, 'cell nuclei']] as const) {
    const times: number[] = [];
    let passes = '';
    for (let i = 0; i < Math.max(3, ROUNDS / 4); i++) {
      const a = await post(url, { image: { base64: (await make(i)).toString('base64') }, prompts: ['heart'] });
      const b = await post(url, { image: { image_id: a.j.image_id }, prompts: [prompt] });
      times.push(b.ms);
      const r = b.j.results[0];
      passes = [r.mode, r.specialist && `specialist ${r.specialist}`, r.zoomed && 'second look', b.j.tta?.image_transforms.length && `${b.j.tta.image_transforms.length} image copies`].filter(Boolean).join(', ');
    }
    rows.push(`  ${label.padEnd(38)} further prompt p50 ${fmt(p50(times))} ms  (${passes})`);
  }
  return rows;
}

/** Requests per second, new image + 2 prompts per request, 4 concurrent clients: this checkout's server, and with BENCH_BASELINE that commit's, in turns. */
async function throughputRuns(url: string, threads: number) {
  let batch = 0;
  const throughput = async (target: string) => {
    const n = 40, start = 2000 + 100 * batch++; // new images every time: no cache hits on either server
    const fresh = await Promise.all(Array.from({ length: n }, (_, i) => benchImage(SIZE, start + i)));
    const t0 = performance.now();
    let k = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (k < n) {
        const i = k++;
        await post(target, { image: { base64: fresh[i].toString('base64') }, prompts: ['heart', 'left clavicle'], ...OWN });
      }
    }));
    return n / ((performance.now() - t0) / 1000);
  };
  await throughput(url); // warm-up
  const baselineCommit = process.env.BENCH_BASELINE;
  const base = baselineCommit ? await startBaselineServer(baselineCommit, { PROMPTSEG_THREADS: String(threads) }) : undefined;
  const rpsNow: number[] = [], rpsBase: number[] = [];
  if (base && 'url' in base) await throughput(base.url); // warm-up
  for (let r = 0; r < 3; r++) {
    rpsNow.push(await throughput(url));
    if (base && 'url' in base) rpsBase.push(await throughput(base.url));
  }
  if (base && 'url' in base) base.close();
  return { rpsNow, rpsBase, base };
}

/** The CLIPSeg peer and the built-in model through the same pipeline: one new image and 1, 4 and 8 prompts; a line saying why when the peer's graph is absent. */
async function peerRows(pipeline: Pipeline, threads: number, limits: { maxPixels: number }): Promise<string[]> {
  const rows: string[] = [];
  const peer = await openClipsegPeer(PEER_DIR, threads, pipeline.vocabulary);
  if ('skipped' in peer) return [`  skipped: ${peer.skipped}`];
  const chest = (i: number) => benchImage(SIZE, 7000 + i).then((b) => decodeImage(b, limits));
  const timeIt = async (ctx: Pipeline, image: RasterImage, prompts: string[]) => {
    const t = performance.now();
    await segment(ctx, { image, prompts });
    return performance.now() - t;
  };
  const peerRounds = Math.max(3, Math.round(ROUNDS / 5));
  for (const n of [1, 4, 8]) {
    const prompts = Array.from({ length: n }, (_, i) => ['heart', 'lungs', 'left clavicle', 'right clavicle', 'trachea', 'spine', 'ribs', 'diaphragm'][i]);
    const ours: number[] = [], theirs: number[] = [];
    await timeIt(peer.ctx, await chest(900 + n), prompts); // warm-ups
    await timeIt(pipeline, await chest(950 + n), prompts);
    // each model's rounds together (alternating, each would start with the other's weights in the CPU caches)
    for (let r = 0; r < peerRounds; r++) ours.push(await timeIt(pipeline, await chest(100 * n + r), prompts));
    for (let r = 0; r < peerRounds; r++) theirs.push(await timeIt(peer.ctx, await chest(100 * n + 50 + r), prompts));
    rows.push(`  one new image, ${n} prompt${n > 1 ? 's' : ' '}: promptseg p50 ${fmt(p50(ours))} ms, ${peer.id} p50 ${fmt(p50(theirs))} ms: promptseg ${(p50(theirs) / p50(ours)).toFixed(1)}x faster${n === 4 ? '  (goal >= 20x)' : ''}`);
  }
  await peer.close();
  return rows;
}

async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, PORT: '0', PROMPTSEG_LOG_LEVEL: 'silent' });
  const srv = await startServer(config, { log: false });
  const pipeline = srv.ctx.pipeline;
  const model = pipeline.registry.get();
  await model.load();
  const limits = { maxPixels: config.PROMPTSEG_MAX_PIXELS };

  const { enc, txt, dec, png, textDecoder, firstModel } = await modelStageTimes(model, limits);
  const { first, next } = await promptLatency(srv.url, pipeline);
  const { routed, routedTo } = await routedLatency(srv.url, pipeline);
  // routed, the request runs that network's image encoder as well as the model's own (whose pooled embedding routes)
  const routedModel = firstModel + (routedTo ? p50(enc) : 0);
  const autoRows = await autoPassRows(srv.url);
  const { rpsNow, rpsBase, base } = await throughputRuns(srv.url, config.PROMPTSEG_THREADS);
  const peer = await peerRows(pipeline, config.PROMPTSEG_THREADS, limits);

  const out = [
    `promptseg bench: ${SIZE}x${SIZE} PNG, model ${pipeline.registry.defaultId} (input ${model.entry.input.size}), ${config.PROMPTSEG_THREADS} intra-op threads, ${ROUNDS} rounds`,
    `machine: ${machine()}`,
    'the model, in this process (p50):',
    `  image encoder ${fmt(p50(enc))} ms, text encoder ${fmt(p50(txt))} ms, mask decoder ${fmt(p50(dec))} ms, PNG decode ${fmt(p50(png))} ms`,
    `  text encoder + mask decoder ${fmt(textDecoder)} ms; image encoder + text encoder + mask decoder + PNG decode ${fmt(firstModel)} ms`,
    'over HTTP (p50), as a ratio to the model time it contains (specialist off):',
    `  further prompt, same image     ${fmt(p50(next))} ms (p95 ${fmt(percentileOf(next, 95))})  = ${ratio(p50(next), textDecoder)} text encoder + mask decoder  (target <= 1.25x)`,
    `  first prompt on a new image    ${fmt(p50(first))} ms (p95 ${fmt(percentileOf(first, 95))})  = ${ratio(p50(first), firstModel)} image + text encoder + mask decoder + PNG decode  (target <= 1.25x)`,
    `  left lung, first prompt         ${fmt(p50(routed))} ms (p95 ${fmt(percentileOf(routed, 95))})  = ${ratio(p50(routed), routedModel)} ${routedTo ? `the model time with the ${routedTo} network's image encoder too (it answered)` : "the model's own model time (it answered)"}`,
    "structures whose calibration adds passes ('auto'):",
    ...autoRows,
    'throughput, new image + 2 prompts per request (specialist off), 4 concurrent clients:',
    `  this checkout: ${rpsNow.map((v) => v.toFixed(1)).join(', ')} requests/s (median ${p50(rpsNow).toFixed(1)})`,
    ...(base === undefined
      ? ['  (set BENCH_BASELINE=<commit> to measure that commit in the same run)']
      : 'skipped' in base
        ? [`  baseline skipped: ${base.skipped}`]
        : [`  ${base.sha.slice(0, 12)}: ${rpsBase.map((v) => v.toFixed(1)).join(', ')} requests/s (median ${p50(rpsBase).toFixed(1)}); this checkout ${ratio(p50(rpsNow), p50(rpsBase))} its throughput  (target >= 1.8x)`]),
    'the CLIPSeg peer, through the same pipeline (segment(): masks, statistics, trust), in this process:',
    ...peer,
  ];
  console.log(out.join('\n'));
  await srv.close();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
