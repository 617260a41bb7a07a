/**
 * npm run load: starts the server as a child process, drives it with 16 concurrent clients and
 * 1,000 segment requests (valid and invalid mixed) through autocannon, and prints unintended
 * errors, latency percentiles and the server's RSS before and after. Prints figures; asserts nothing.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { benchImage, machine, percentileOf } from './bench-helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PORT = Number(process.env.LOAD_PORT ?? 8799);
const CONNECTIONS = 16;
const AMOUNT = Number(process.env.LOAD_REQUESTS ?? 1000);

async function rss(url: string): Promise<number> {
  const m = await (await fetch(`${url}/metrics`)).text();
  return Number(/promptseg_process_resident_memory_bytes (\d+)/.exec(m)?.[1] ?? NaN);
}

async function main(): Promise<void> {
  const child = spawn(process.execPath, [path.join(here, '..', 'main', 'cli.js'), 'serve'], {
    env: { ...process.env, PORT: String(PORT), HOST: '127.0.0.1', PROMPTSEG_LOG_LEVEL: 'warn', PROMPTSEG_QUEUE_SIZE: '64' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${PORT}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const images = await Promise.all([0, 1, 2, 3].map((v) => benchImage(256, v)));
  const valid = images.map((b) => JSON.stringify({ image: { base64: b.toString('base64') }, prompts: ['left lung', 'heart'] }));
  const json = { 'content-type': 'application/json' };
  let unintended = 0;
  const tally = new Map<string, number>();
  const latencies: number[] = [];
  // setupRequest runs as a request is sent and onResponse when its answer arrives, on the same connection context
  const setupRequest = (req: autocannon.Request, context: object) => {
    (context as Record<string, unknown>).sentAt = performance.now();
    return req;
  };
  const expect = (kind: string, ok: (s: number) => boolean) => (status: number, _body: string, ctx?: object) => {
    const context = (ctx ?? {}) as Record<string, unknown>;
    if (typeof context.sentAt === 'number') latencies.push(performance.now() - context.sentAt);
    const key = `${kind} -> ${status}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
    if (!ok(status) && status !== 503) unintended++;
  };
  const requests = [
    ...valid.map((body) => ({ method: 'POST' as const, path: '/v1/segment', headers: json, body, setupRequest, onResponse: expect('valid', (s) => s === 200) })),
    { method: 'POST' as const, path: '/v1/segment', headers: json, body: JSON.stringify({ image: { base64: '!!' }, prompts: ['heart'] }), setupRequest, onResponse: expect('bad base64', (s) => s === 400) },
    { method: 'POST' as const, path: '/v1/segment', headers: json, body: JSON.stringify({ image: { base64: images[0].toString('base64') }, prompts: [] }), setupRequest, onResponse: expect('no prompts', (s) => s === 422) },
    { method: 'POST' as const, path: '/v1/segment', headers: { 'content-type': 'text/plain' }, body: 'hello', setupRequest, onResponse: expect('wrong type', (s) => s === 415) },
    { method: 'POST' as const, path: '/v1/segment', headers: json, body: JSON.stringify({ image: { base64: images[1].toString('base64') }, prompts: ['heart'], model: 'nope' }), setupRequest, onResponse: expect('unknown model', (s) => s === 404) },
  ];
  const run = (amount: number) => autocannon({ url, connections: CONNECTIONS, amount, requests, timeout: 60 });
  await run(100); // warm-up
  latencies.length = 0;
  tally.clear();
  unintended = 0;
  const before = await rss(url);
  const result = await run(AMOUNT);
  const after = await rss(url);
  const codes = result.statusCodeStats as Record<string, { count: number }>;
  console.log(`promptseg load: ${CONNECTIONS} concurrent clients, ${AMOUNT} requests (4 of 8 kinds valid), after 100 warm-up requests`);
  console.log(`machine: ${machine()}`);
  console.log(`status codes: ${Object.entries(codes).map(([k, v]) => `${k}=${v.count}`).join(' ')}; socket errors ${result.errors}, timeouts ${result.timeouts}`);
  for (const [k, v] of [...tally.entries()].sort()) console.log(`  ${k}: ${v}`);
  console.log(`unintended errors (not the intended status, 503 overload excepted): ${unintended + result.errors + result.timeouts}`);
  console.log(`latency over ${latencies.length} requests: p50 ${percentileOf(latencies, 50).toFixed(0)} ms  p95 ${percentileOf(latencies, 95).toFixed(0)} ms  p99 ${percentileOf(latencies, 99).toFixed(0)} ms; ${(AMOUNT / (result.duration || 1)).toFixed(1)} requests/s`);
  console.log(`server RSS before ${(before / 2 ** 20).toFixed(1)} MiB, after ${(after / 2 ** 20).toFixed(1)} MiB, growth ${(((after - before) / before) * 100).toFixed(1)}%`);
  child.kill('SIGTERM');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
