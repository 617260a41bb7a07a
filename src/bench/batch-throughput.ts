/**
 * npm run bench:batch: batch jobs on a real Redis (redis-server on a free loopback port, in a
 * temporary folder) and BullMQ. Images per second with 1, 2 and 4 `promptseg worker` processes,
 * each with PROMPTSEG_THREADS = max(1, cores / workers), on a batch of 512 x 512 images made by
 * code (workers started and warmed first, so the time is the batch's own); then the RSS of one
 * worker over 2,000 jobs of small images, sampled from /proc as the jobs go. Prints figures;
 * asserts nothing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../config/env.js';
import { batchStatus, redisClient, submitBatch } from '../service/batch.js';
import { benchImage, freePort, machine } from './bench-helpers.js';
import { writeFile, mkdir } from 'node:fs/promises';

const CLI = path.join(PROJECT_ROOT, 'dist', 'main', 'cli.js');
const cores = os.cpus().length;
const IMAGES = Number(process.env.BENCH_BATCH_IMAGES ?? 120);
const RSS_JOBS = Number(process.env.BENCH_BATCH_RSS_JOBS ?? 2000);

/** RSS of a process and its children (`promptseg worker` runs itself again with its memory settings), in MB. */
function rssMb(pid: number): number {
  const own = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no children listed
  }
  return own + children.reduce((s, c) => s + rssMb(c), 0);
}

async function images(dir: string, n: number, size: number, from: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `img${String(from + i).padStart(5, '0')}.png`);
    await writeFile(f, await benchImage(size, from + i));
    files.push(f);
  }
  return files;
}

async function main(): Promise<void> {
  if (spawnSync('redis-server', ['--version']).error) {
    console.log('bench:batch skipped: redis-server is not installed (Debian package redis-server)');
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'promptseg-bench-batch-'));
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG'; i++) await new Promise((r) => setTimeout(r, 50));
  const status = redisClient(url);
  const workers: ChildProcess[] = [];
  const startWorkers = (n: number, threads: number) => {
    for (let i = 0; i < n; i++) workers.push(spawn(process.execPath, [CLI, 'worker'], { env: { ...process.env, PROMPTSEG_REDIS_URL: url, PROMPTSEG_THREADS: String(threads), PROMPTSEG_LOG_LEVEL: 'silent' }, stdio: 'ignore' }));
  };
  const stopWorkers = async () => {
    await Promise.all(workers.splice(0).map((w) => new Promise<void>((r) => (w.once('exit', () => r()), w.kill('SIGTERM')))));
  };
  const runBatch = async (inputs: string[], out: string, onProgress?: (done: number) => void) => {
    const spec = await submitBatch(url, { inputs, prompts: ['left lung'], out });
    const t0 = performance.now();
    for (;;) {
      const s = await batchStatus(status, spec.id);
      onProgress?.(s!.done);
      if (s!.pending === 0) return { seconds: (performance.now() - t0) / 1000, failed: s!.failed };
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    const warm = await images(path.join(dir, 'warm'), 8, 512, 90000);
    const rows: { workers: number; threads: number; rate: number }[] = [];
    for (const n of [1, 2, 4]) {
      const threads = Math.max(1, Math.floor(cores / n));
      startWorkers(n, threads);
      await runBatch(warm, path.join(dir, `warm-out-${n}`)); // every worker loaded and warm
      const inputs = await images(path.join(dir, `in-${n}`), IMAGES, 512, n * 1000);
      const r = await runBatch(inputs, path.join(dir, `out-${n}`));
      rows.push({ workers: n, threads, rate: IMAGES / r.seconds });
      await stopWorkers();
    }
    // RSS of one worker over many jobs
    const small = await images(path.join(dir, 'rss'), RSS_JOBS, 96, 200000);
    startWorkers(1, cores);
    const pid = workers[0].pid!;
    const samples: { done: number; rss: number }[] = [];
    let next = 0;
    await runBatch(small, path.join(dir, 'rss-out'), (done) => {
      if (done >= next) {
        samples.push({ done, rss: rssMb(pid) });
        next += RSS_JOBS / 10;
      }
    });
    samples.push({ done: RSS_JOBS, rss: rssMb(pid) });
    await stopWorkers();
    const warmRss = samples.find((s) => s.done >= RSS_JOBS / 10)?.rss ?? samples[0].rss;
    const last = samples[samples.length - 1].rss;
    console.log(`promptseg bench:batch (${machine()}), Redis ${spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[2] ?? ''}`);
    console.log(`images per second, ${IMAGES} images of 512 x 512, one prompt, workers started and warm:`);
    for (const r of rows) console.log(`  ${r.workers} worker${r.workers > 1 ? 's' : ' '} x ${r.threads} thread${r.threads > 1 ? 's' : ' '}: ${r.rate.toFixed(2)} images/s  (${(r.rate / rows[0].rate).toFixed(2)}x one worker)`);
    console.log(`one worker's RSS over ${RSS_JOBS} jobs of 96 x 96 images: ${samples.map((s) => `${s.done}: ${s.rss.toFixed(0)} MB`).join(', ')}`);
    console.log(`  after warm-up (${RSS_JOBS / 10} jobs) ${warmRss.toFixed(0)} MB -> ${last.toFixed(0)} MB at the end: ${(((last - warmRss) / warmRss) * 100).toFixed(1)}% (goal: under 10%)`);
  } finally {
    await stopWorkers();
    status.disconnect();
    server.kill('SIGTERM');
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
