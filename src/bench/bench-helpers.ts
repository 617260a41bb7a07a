import { createServer } from 'node:net';
import os from 'node:os';
import sharp from 'sharp';

/** The eval metrics' percentile (linear interpolation), under the name the bench scripts use. */
export { percentile as percentileOf } from '../eval/metrics.js';

export const machine = () => `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}`;

/** A grey chest-like test image of the given size; each `variant` has its own grain (so its own hash and features). */
export function benchImage(size: number, variant: number): Promise<Buffer> {
  const px = Buffer.alloc(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x / size, v = y / size;
      const lung = ((u - 0.32) / 0.15) ** 2 + ((v - 0.48) / 0.3) ** 2 < 1 || ((u - 0.68) / 0.15) ** 2 + ((v - 0.48) / 0.3) ** 2 < 1;
      px[y * size + x] = (lung ? 60 : 170) + (Math.imul((x * 31 + y * 17) ^ Math.imul(variant + 1, 0x9e3779b1), 0x85ebca6b) >>> 28);
    }
  }
  return sharp(px, { raw: { width: size, height: size, channels: 1 } }).png().toBuffer();
}

export const fmt = (v: number) => v.toFixed(1);

/** A TCP port free on the loopback interface now (for a server started next). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
