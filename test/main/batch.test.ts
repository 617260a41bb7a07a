import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchStatus, redisClient, type BatchStatus } from '../../src/service/batch.js';
import { operationByName } from '../../src/service/operation-table.js';
import { runOperation } from '../../src/service/run-operation.js';
import { ROOT } from '../helpers/project.js';
import { noRedis, TestRedis } from '../helpers/redis.js';
import { testContext } from '../helpers/service.js';

const CLI = path.join(ROOT, 'dist', 'main', 'cli.js');

/** n small grey images made by code (a bright oval on a textured ground), and `bad` files that only look like images. */
async function makeImages(dir: string, n: number, bad: number): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const S = 64, px = Buffer.alloc(S * S);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) px[y * S + x] = ((x - 20 - (i % 20)) / 12) ** 2 + ((y - 32) / 18) ** 2 < 1 ? 70 : 170 + ((x * 7 + y * 3 + i) % 13);
    const name = `img${String(i).padStart(3, '0')}.png`;
    await sharp(px, { raw: { width: S, height: S, channels: 1 } }).png().toFile(path.join(dir, name));
    names.push(name);
  }
  for (let i = 0; i < bad; i++) {
    const name = `broken${i}.png`;
    writeFileSync(path.join(dir, name), Buffer.from('not a png at all'));
    names.push(name);
  }
  return names;
}

const run = (args: string[], env: Record<string, string>) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env, PROMPTSEG_LOG_LEVEL: 'silent' } });

describe.skipIf(noRedis)(`batch jobs on a real Redis with BullMQ${noRedis ? `: skipped, ${noRedis}` : ''}`, () => {
  let redis: TestRedis;
  const workers: ChildProcess[] = [];
  beforeAll(async () => {
    redis = await TestRedis.start();
  });
  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await redis?.down();
  });
  // PROMPTSEG_RELAUNCH=0: the worker is this process itself (not a child of a launcher), so SIGKILL reaches it
  const worker = (env: Record<string, string> = {}) => {
    const w = spawn(process.execPath, [CLI, 'worker', '--concurrency', '1'], { env: { ...process.env, PROMPTSEG_REDIS_URL: redis.url, PROMPTSEG_BATCH_LOCK_MS: '1500', PROMPTSEG_LOG_LEVEL: 'silent', PROMPTSEG_THREADS: '1', PROMPTSEG_RELAUNCH: '0', ...env }, stdio: 'ignore' });
    workers.push(w);
    return w;
  };
  const waitFor = async (id: string, until: (s: BatchStatus) => boolean, ms: number): Promise<BatchStatus> => {
    const client = redisClient(redis.url, { failFast: true });
    try {
      const t0 = Date.now();
      for (;;) {
        const s = await batchStatus(client, id).catch(() => undefined); // Redis may be restarting
        if (s && until(s)) return s;
        if (Date.now() - t0 > ms) throw new Error(`batch ${id} did not get there in ${ms} ms: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.disconnect();
    }
  };
  const submit = (inputs: string[], out: string) => {
    const r = run(['batch', 'submit', ...inputs, '--prompt', 'left lung', '--out', out], { PROMPTSEG_REDIS_URL: redis.url });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  /** Every good input has exactly one mask, nothing half-written is left, and the summary's counts match. */
  const checkOutputs = async (out: string, names: string[], bad: number) => {
    // a second worker that saw the batch complete may still be renaming its identical summary
    for (let i = 0; i < 50 && readdirSync(out).some((f) => f.startsWith('.')); i++) await new Promise((r) => setTimeout(r, 100));
    const files = readdirSync(out).sort();
    const masks = files.filter((f) => f.endsWith('__left_lung.png'));
    expect(masks).toEqual(names.filter((n) => n.startsWith('img')).map((n) => `${path.basename(n, '.png')}__left_lung.png`).sort());
    expect(files.filter((f) => !masks.includes(f))).toEqual(['summary.json']); // no .partial, no temporary names
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { total: number; done: number; failed: number; results: { file: string; error?: { reason: string } }[] };
    expect([summary.total, summary.done, summary.failed]).toEqual([names.length, names.length - bad, bad]);
    expect(summary.results.filter((r) => r.error).map((r) => path.basename(r.file))).toEqual(names.filter((n) => n.startsWith('broken')));
  };

  it('two workers share a batch of 200 images; one is killed (SIGKILL) mid-batch; every image ends with exactly one output, bad input is not retried', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'promptseg-batch-'));
    const names = await makeImages(path.join(root, 'in'), 198, 2);
    const out = path.join(root, 'out');
    const id = submit([path.join(root, 'in')], out);
    const a = worker(), b = worker();
    await waitFor(id, (s) => s.done >= 30, 120_000);
    a.kill('SIGKILL');
    const s = await waitFor(id, (st) => st.pending === 0 && !!st.summary, 120_000);
    expect([s.total, s.done, s.failed]).toEqual([200, 198, 2]);
    // the files that only look like PNGs: failed once, with the decoder's reason, not retried
    expect(s.failures.map((f) => path.basename(f.file))).toEqual(['broken0.png', 'broken1.png']);
    for (const f of s.failures) expect([f.kind, f.reason]).toEqual(['unsupported_format', expect.stringMatching(/./)]);
    // summary.json is written by the last job; wait for its rename
    for (let i = 0; i < 50 && !existsSync(path.join(out, 'summary.json')); i++) await new Promise((r) => setTimeout(r, 100));
    await checkOutputs(out, names, 2);
    // both workers did part of it: the killed one before it died, the other the rest and its lost job
    const by = new Set((JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { results: { worker?: string }[] }).results.map((x) => x.worker?.split(':')[1]).filter(Boolean));
    expect([...by].sort()).toEqual([String(a.pid), String(b.pid)].sort());
    // the same status over the operation table (GET /v1/batches/{id}, MCP get_batch) and the CLI
    const ctx = testContext({ PROMPTSEG_REDIS_URL: redis.url });
    const r = await runOperation(ctx, operationByName('get_batch')!, { id }, { via: 'eval' });
    expect(r.ok && (r.value as BatchStatus).done).toBe(198);
    ctx.redis?.disconnect();
    const cli = run(['batch', 'status', id], { PROMPTSEG_REDIS_URL: redis.url });
    expect(JSON.parse(cli.stdout)).toMatchObject({ id, total: 200, done: 198, failed: 2, pending: 0 });
    b.kill('SIGTERM');
  }, 240_000);

  it('Redis restarted mid-batch: the worker reconnects and the batch completes', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'promptseg-batch-'));
    const names = await makeImages(path.join(root, 'in'), 60, 0);
    const out = path.join(root, 'out');
    const id = submit([path.join(root, 'in')], out);
    const w = worker();
    await waitFor(id, (s) => s.done >= 10, 120_000);
    await redis.down();
    await new Promise((r) => setTimeout(r, 1000));
    await redis.up();
    const s = await waitFor(id, (st) => st.pending === 0 && !!st.summary, 120_000);
    expect([s.total, s.done, s.failed]).toEqual([60, 60, 0]);
    for (let i = 0; i < 50 && !existsSync(path.join(out, 'summary.json')); i++) await new Promise((r) => setTimeout(r, 100));
    await checkOutputs(out, names, 0);
    w.kill('SIGTERM');
  }, 240_000);

  it('says what is wrong: no Redis configured, an unknown batch, duplicate input names', async () => {
    expect(run(['batch', 'status', '00000000-0000-0000-0000-000000000000'], {}).stderr).toMatch(/PROMPTSEG_REDIS_URL/);
    const unknown = run(['batch', 'status', '00000000-0000-0000-0000-000000000000'], { PROMPTSEG_REDIS_URL: redis.url });
    expect([unknown.status, unknown.stderr]).toEqual([2, expect.stringMatching(/no batch 0{8}/)]);
    const root = mkdtempSync(path.join(tmpdir(), 'promptseg-batch-'));
    await makeImages(path.join(root, 'a'), 1, 0);
    await makeImages(path.join(root, 'b'), 1, 0);
    const dup = run(['batch', 'submit', path.join(root, 'a'), path.join(root, 'b'), '--prompt', 'heart', '--out', path.join(root, 'out')], { PROMPTSEG_REDIS_URL: redis.url });
    expect([dup.status, dup.stderr]).toEqual([2, expect.stringMatching(/two inputs are named img000/)]);
    const ctx = testContext();
    const r = await runOperation(ctx, operationByName('get_batch')!, { id: '00000000-0000-0000-0000-000000000000' }, { via: 'eval' });
    expect(!r.ok && r.error.message).toMatch(/PROMPTSEG_REDIS_URL/);
  }, 60_000);
});
