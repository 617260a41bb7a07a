/** Statistics used by adaptation, calibration and evaluation alike: Dice, means, percentiles, bootstrap intervals and a seeded generator. */

/** A seeded generator (mulberry32): bootstrap intervals and adapter training are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Dice of two 0/1 masks (1 when both are empty). */
export function dice(a: Uint8Array, b: Uint8Array): number {
  let inter = 0, sa = 0, sb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ? 1 : 0, y = b[i] ? 1 : 0;
    sa += x; sb += y; inter += x & y;
  }
  return sa + sb === 0 ? 1 : (2 * inter) / (sa + sb);
}

export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export const mean = (v: number[]): number => (v.length ? v.reduce((s, x) => s + x, 0) / v.length : NaN);

/** Percentile bootstrap 95% interval of the mean. */
export function bootstrapCi(values: number[], iterations = 1000, seed = 1): [number, number] {
  if (values.length === 0) return [NaN, NaN];
  if (values.length === 1) return [values[0], values[0]];
  const rnd = seededRandom(seed);
  const means: number[] = [];
  for (let it = 0; it < iterations; it++) {
    let s = 0;
    for (let i = 0; i < values.length; i++) s += values[Math.floor(rnd() * values.length)];
    means.push(s / values.length);
  }
  return [percentile(means, 2.5), percentile(means, 97.5)];
}
