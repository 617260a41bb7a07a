/**
 * npm run bench:hostile: starts `promptseg serve` as a child process as `npm start` does (on Linux
 * it runs itself again with its memory settings: relaunch.ts) with the README's defaults,
 * and sends it the memory and cost cases of a hostile review, while sampling the server's RSS
 * (/proc/<pid>/status) and the delay of /healthz. Prints, per case, the status codes, time and
 * RSS after it; then the peak RSS, the settled RSS against the warm baseline, and the longest
 * /healthz delay, with the goals beside them. Asserts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { crc32, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../config/env.js';
import { benchImage, freePort, machine } from './bench-helpers.js';

const MB = 1024 * 1024;

/** VmRSS and VmHWM (peak) of a process, in MB. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** A PNG chunk with its length and CRC. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** A 256 px PNG carrying a text chunk of `bytes` bytes before IEND. */
async function pngWithText(bytes: number): Promise<Buffer> {
  const png = await benchImage(256, 7);
  const iend = png.length - 12;
  return Buffer.concat([png.subarray(0, iend), chunk('tEXt', Buffer.concat([Buffer.from('Comment\0'), Buffer.alloc(bytes - 8, 0x61)])), png.subarray(iend)]);
}

/** A NIfTI-1 header for uint8 data of these dims. */
function niftiHeader(dims: [number, number, number]): Buffer {
  const h = Buffer.alloc(352);
  h.writeInt32LE(348, 0);
  h.writeInt16LE(3, 40);
  dims.forEach((d, i) => h.writeInt16LE(d, 42 + 2 * i));
  for (let k = 4; k < 8; k++) h.writeInt16LE(1, 40 + 2 * k);
  h.writeInt16LE(2, 70);
  h.writeInt16LE(8, 72);
  for (let k = 0; k < 4; k++) h.writeFloatLE(1, 76 + 4 * k);
  h.writeFloatLE(352, 108);
  h.write('n+1\0', 344, 'latin1');
  return h;
}

/** gzip members of `memberBytes` zeros, repeated: a small file that inflates to members x memberBytes. */
function zeroMembers(memberBytes: number, members: number): Buffer {
  const one = gzipSync(Buffer.alloc(memberBytes), { level: 9 });
  return Buffer.concat(Array.from({ length: members }, () => one));
}

/** `promptseg serve` as `npm start` runs it, on a free port; resolves once /readyz answers 200. */
async function startServer(): Promise<{ url: string; child: ChildProcess; pid: number }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'main', 'cli.js'), 'serve'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PROMPTSEG_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // the server is the launcher's child where `serve` relaunched itself
  const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return { url, child, pid: kids[0] ?? child.pid! };
}

/** Sends one request and reads its body: the status, or how it failed. */
async function send(url: string, init: RequestInit): Promise<number | string> {
  try {
    const r = await fetch(url, init);
    await r.arrayBuffer();
    return r.status;
  } catch (e) {
    return (e as Error).name === 'AbortError' ? 'hung up' : `error ${(e as Error).message}`;
  }
}

const json = (body: object): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/**
 * Watches the server while it is attacked: its RSS every 25 ms, and the delay of /healthz probed
 * from a process of its own (so that this one's work, making the attack's bodies, cannot delay
 * the probe's clock). `caseHealth` is the longest delay since it was last reset.
 */
class ServerWatch {
  peak = 0;
  worstHealth = 0;
  caseHealth = 0;
  private sampling = true;
  private readonly rssSampler: Promise<void>;
  private readonly probe: ChildProcess;
  private readonly probeExit: Promise<void>;

  constructor(private readonly pid: number, url: string, baseline: number) {
    this.peak = baseline;
    this.rssSampler = (async () => {
      while (this.sampling) {
        this.peak = Math.max(this.peak, memoryOf(pid).rss);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    this.probe = spawn(process.execPath, ['-e', `
    const url = ${JSON.stringify(`${url}/healthz`)};
    (async () => { for (;;) { const t0 = performance.now(); await fetch(url).then((r) => r.arrayBuffer()).catch(() => 0); console.log(Math.round(performance.now() - t0)); await new Promise((r) => setTimeout(r, 50)); } })();
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.probe.stdout!.setEncoding('utf8');
    this.probe.stdout!.on('data', (s: string) => {
      for (const line of s.split('\n').filter(Boolean)) {
        this.worstHealth = Math.max(this.worstHealth, Number(line));
        this.caseHealth = Math.max(this.caseHealth, Number(line));
      }
    });
    this.probeExit = new Promise<void>((resolve) => this.probe.on('exit', () => resolve()));
  }

  async stop(): Promise<void> {
    this.sampling = false;
    this.probe.kill();
    await Promise.all([this.rssSampler, this.probeExit]);
  }
}

/** The attacks, in order: each a name and the requests it sends (resolving to their statuses). */
async function hostileCases(url: string): Promise<{ name: string; work: () => Promise<unknown> }[]> {
  const cases: { name: string; work: () => Promise<unknown> }[] = [];
  const hugeRaw = Buffer.alloc(6324 * 6324, 128);
  const huge = await sharp(hugeRaw, { raw: { width: 6324, height: 6324, channels: 1 } }).png({ compressionLevel: 9 }).toBuffer();
  const hugeReq = json({ image: { base64: huge.toString('base64') }, prompts: ['left lung', 'right lung', 'heart', 'left clavicle'] });
  for (let i = 1; i <= 3; i++) cases.push({ name: `${(huge.length / 1024).toFixed(0)} KB PNG of 6324x6324, 4 prompts (${i} of 3)`, work: () => send(`${url}/v1/segment`, hugeReq) });

  const fat = await pngWithText(20 * MB);
  cases.push({
    name: `8 concurrent multipart uploads of a ${(fat.length / MB).toFixed(0)} MB PNG (text chunk)`,
    work: () =>
      Promise.all(Array.from({ length: 8 }, () => {
        const fd = new FormData();
        fd.append('image', new Blob([new Uint8Array(fat)], { type: 'image/png' }), 'fat.png');
        fd.append('prompt', 'heart');
        return send(`${url}/v1/segment`, { method: 'POST', body: fd });
      })),
  });

  const jpeg = await sharp(await benchImage(2048, 3)).jpeg({ quality: 80 }).toBuffer();
  const everything = { image: { base64: jpeg.toString('base64') }, prompts: Array.from({ length: 16 }, (_, i) => ['left lung', 'right lung', 'heart', 'left clavicle'][i % 4] + ' '.repeat(i)), tta: 8, tta_image: 12, zoom: 'on', specialist: 'on', outputs: ['png', 'rle', 'polygons'], overlay: true };
  cases.push({ name: `${(jpeg.length / 1024).toFixed(0)} KB JPEG 2048x2048, 16 prompts, tta 8, tta_image 12, zoom and specialist on, all outputs`, work: () => send(`${url}/v1/segment`, json(everything)) });
  cases.push({
    name: 'the heaviest request the default budget allows (2048x2048, 4 prompts, tta 2), client hangs up after 1 s',
    work: () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 1000);
      return send(`${url}/v1/segment`, { ...json({ ...everything, prompts: everything.prompts.slice(0, 4), tta: 2, tta_image: 'auto', zoom: 'auto', specialist: 'auto' }), signal: ac.signal });
    },
  });

  const vol = Buffer.concat([gzipSync(niftiHeader([1000, 1000, 320])), zeroMembers(32_000_000, 10)]);
  cases.push({ name: `${(vol.length / 1024).toFixed(0)} KB .nii.gz of 1000x1000x320 uint8, slice_range [0, 0]`, work: () => send(`${url}/v1/segment-volume`, json({ image: { base64: vol.toString('base64') }, prompts: ['liver'], slice_range: [0, 0] })) });
  const bomb = Buffer.concat([gzipSync(niftiHeader([1000, 1000, 320])), zeroMembers(64 * MB, 48)]);
  cases.push({ name: `${(bomb.length / MB).toFixed(1)} MB gzip that inflates to 3 GiB (header: 1000x1000x320 uint8)`, work: () => send(`${url}/v1/segment-volume`, json({ image: { base64: bomb.toString('base64') }, prompts: ['liver'] })) });
  return cases;
}

async function main(): Promise<void> {
  const { url, child, pid } = await startServer();
  // warm baseline: the model loaded and one ordinary request served
  await send(`${url}/v1/segment`, json({ image: { base64: (await benchImage(512, 1)).toString('base64') }, prompts: ['left lung', 'heart'] }));
  await new Promise((r) => setTimeout(r, 1000));
  const baseline = memoryOf(pid).rss;

  const watch = new ServerWatch(pid, url, baseline);
  const rows: string[] = [];
  for (const { name, work } of await hostileCases(url)) {
    const t0 = performance.now();
    watch.caseHealth = 0;
    const out = await work();
    rows.push(`| ${name} | ${JSON.stringify(out)} | ${((performance.now() - t0) / 1000).toFixed(1)} | ${memoryOf(pid).rss.toFixed(0)} | ${watch.caseHealth.toFixed(0)} |`);
  }

  // settle: idle for a while, then read RSS again
  await new Promise((r) => setTimeout(r, 5000));
  await watch.stop();
  const settled = memoryOf(pid);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const loopMax = Number(/^promptseg_event_loop_delay_max_seconds (\S+)$/m.exec(metrics)?.[1] ?? NaN) * 1000;
  child.kill('SIGTERM');

  console.log(`promptseg bench:hostile (${machine()})\n`);
  console.log('| case | statuses | s | RSS after (MB) | longest /healthz (ms) |\n|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log('');
  console.log(`warm baseline RSS: ${baseline.toFixed(0)} MB`);
  console.log(`peak RSS: ${Math.max(watch.peak, settled.peak).toFixed(0)} MB (goal under 1536)`);
  console.log(`settled RSS: ${settled.rss.toFixed(0)} MB = baseline + ${(settled.rss - baseline).toFixed(0)} MB (goal: within 300)`);
  console.log(`longest /healthz delay while under attack: ${watch.worstHealth.toFixed(0)} ms (goal under 250)`);
  console.log(`longest event-loop block in the server (its /metrics): ${loopMax.toFixed(0)} ms`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
