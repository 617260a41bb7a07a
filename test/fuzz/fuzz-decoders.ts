import { AppFailure } from '../../src/core/errors.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { seededRandom } from '../../src/eval/metrics.js';

export interface FuzzReport {
  format: string;
  cases: number;
  decoded: number;
  typedErrors: Record<string, number>;
  crashes: { mutation: string; message: string }[];
  slow: number;
  maxMs: number;
}

type Mutation = (b: Buffer, rnd: () => number) => Buffer;
const int = (rnd: () => number, n: number) => Math.floor(rnd() * n);

const MUTATIONS: Record<string, Mutation> = {
  bitflips: (b, rnd) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(rnd, 8); k > 0; k--) {
      const i = int(rnd, c.length);
      c[i] ^= 1 << int(rnd, 8);
    }
    return c;
  },
  truncate: (b, rnd) => b.subarray(0, int(rnd, b.length)),
  bytes: (b, rnd) => {
    const c = Buffer.from(b);
    const start = int(rnd, c.length), len = 1 + int(rnd, 16);
    for (let i = start; i < Math.min(c.length, start + len); i++) c[i] = int(rnd, 256);
    return c;
  },
  /** Overwrites a 16- or 32-bit little/big-endian field with an extreme value: element and chunk lengths, sizes. */
  lengths: (b, rnd) => {
    const c = Buffer.from(b);
    const i = int(rnd, Math.max(1, c.length - 4));
    const v = [0, 1, 0xff, 0xffff, 0x7fffffff, 0xffffffff, int(rnd, 0xffffffff)][int(rnd, 7)];
    if (rnd() < 0.5) c.writeUInt32LE(v >>> 0, i);
    else c.writeUInt32BE(v >>> 0, i);
    return c;
  },
  splice: (b, rnd) => {
    const a = int(rnd, b.length), len = int(rnd, Math.min(512, b.length - a));
    return Buffer.concat([b.subarray(0, a), b.subarray(a, a + len), b.subarray(a)]);
  },
};

/** Mutates a valid file `cases` times (seeded) and decodes each; every case must end in a result or a typed error. */
export async function fuzzDecoder(format: string, seed: Buffer, cases: number, seedValue = 1, boundMs = 2000): Promise<FuzzReport> {
  const rnd = seededRandom(seedValue);
  const names = Object.keys(MUTATIONS);
  const report: FuzzReport = { format, cases, decoded: 0, typedErrors: {}, crashes: [], slow: 0, maxMs: 0 };
  for (let k = 0; k < cases; k++) {
    const name = names[int(rnd, names.length)];
    const input = MUTATIONS[name](seed, rnd);
    const t0 = performance.now();
    try {
      await decodeImage(input, { maxPixels: 4_000_000 });
      report.decoded++;
    } catch (e) {
      if (e instanceof AppFailure) report.typedErrors[e.error.kind] = (report.typedErrors[e.error.kind] ?? 0) + 1;
      else report.crashes.push({ mutation: name, message: e instanceof Error ? e.message : String(e) });
    }
    const ms = performance.now() - t0;
    report.maxMs = Math.max(report.maxMs, ms);
    if (ms > boundMs) report.slow++;
  }
  return report;
}

export function formatReport(r: FuzzReport): string {
  const errs = Object.entries(r.typedErrors).map(([k, v]) => `${k}=${v}`).join(' ');
  return `${r.format}: ${r.cases} cases, decoded ${r.decoded}, typed errors ${errs || 'none'}, crashes ${r.crashes.length}, over time bound ${r.slow}, slowest ${r.maxMs.toFixed(0)} ms`;
}
