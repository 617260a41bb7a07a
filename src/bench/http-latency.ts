/**
 * npm run bench: starts the server in this process and measures, for a 512 px image, the HTTP
 * latency of the first prompt on a new image (image encoder runs) and of each further prompt on
 * the same image (cached features), then requests per second. Prints figures; asserts nothing.
 */
import { loadConfig } from '../config/env.js';
import { startServer } from '../main/serve.js';
import { benchImage, fmt, machine, percentileOf } from './bench-helpers.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const SIZE = 512;

async function main(): Promise<void> {
  const srv = await startServer(loadConfig({ ...process.env, PORT: '0', PROMPTSEG_LOG_LEVEL: 'silent' }), { log: false });
  await srv.ctx.pipeline.registry.get().load();
  const post = async (body: object) => {
    const t0 = performance.now();
    const r = await fetch(`${srv.url}/v1/segment`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const j = (await r.json()) as { image_id: string };
    if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(j)}`);
    return { ms: performance.now() - t0, j };
  };
  const further = ['right lung', 'heart', 'left clavicle', 'lungs'];
  // warm-up
  await post({ image: { base64: (await benchImage(SIZE, 999)).toString('base64') }, prompts: ['left lung'] });
  const first: number[] = [], next: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const img = (await benchImage(SIZE, i)).toString('base64');
    const a = await post({ image: { base64: img }, prompts: ['left lung'] });
    first.push(a.ms);
    for (const p of further) next.push((await post({ image: { image_id: a.j.image_id }, prompts: [p] })).ms);
  }
  const imgs = await Promise.all(Array.from({ length: 8 }, (_, i) => benchImage(SIZE, 1000 + i)));
  const n = 40;
  const t0 = performance.now();
  let k = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (k < n) {
      const i = k++;
      await post({ image: { base64: imgs[i % imgs.length].toString('base64') }, prompts: ['left lung', 'heart'] });
    }
  }));
  const rps = n / ((performance.now() - t0) / 1000);
  console.log(`promptseg HTTP latency, ${SIZE}x${SIZE} PNG, model ${srv.ctx.pipeline.registry.defaultId}, ${srv.ctx.config.PROMPTSEG_THREADS} intra-op threads`);
  console.log(`machine: ${machine()}`);
  console.log(`first prompt on a new image   p50 ${fmt(percentileOf(first, 50))} ms  p95 ${fmt(percentileOf(first, 95))} ms  (n=${first.length})`);
  console.log(`further prompt, same image    p50 ${fmt(percentileOf(next, 50))} ms  p95 ${fmt(percentileOf(next, 95))} ms  (n=${next.length})`);
  console.log(`throughput, new image + 2 prompts per request, 4 concurrent clients: ${rps.toFixed(2)} requests/s`);
  await srv.close();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
