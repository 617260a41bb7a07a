import { gzipSync } from 'node:zlib';

/**
 * Writes a NIfTI-1 file byte by byte (independently of the service's writer): int16 data,
 * anisotropic pixdim and a non-identity sform (a rotation about k plus an offset).
 */
export function niftiVolume(dims: [number, number, number], pixdim: [number, number, number], opts: { gzip?: boolean } = {}): { bytes: Buffer; srow: number[][]; data: Int16Array } {
  const [nx, ny, nz] = dims;
  const hdr = Buffer.alloc(352);
  hdr.writeInt32LE(348, 0);
  hdr.writeInt16LE(nz > 1 ? 3 : 2, 40);
  hdr.writeInt16LE(nx, 42);
  hdr.writeInt16LE(ny, 44);
  hdr.writeInt16LE(nz, 46);
  for (let k = 4; k < 8; k++) hdr.writeInt16LE(1, 40 + 2 * k);
  hdr.writeInt16LE(4, 70); // int16
  hdr.writeInt16LE(16, 72);
  hdr.writeFloatLE(1, 76);
  hdr.writeFloatLE(pixdim[0], 80);
  hdr.writeFloatLE(pixdim[1], 84);
  hdr.writeFloatLE(pixdim[2], 88);
  hdr.writeFloatLE(352, 108);
  hdr.writeFloatLE(1, 112);
  hdr.writeFloatLE(0, 116);
  hdr.writeUInt8(2 | 8, 123); // mm, s
  hdr.writeInt16LE(0, 252); // qform_code
  hdr.writeInt16LE(1, 254); // sform_code: scanner
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const srow = [
    [pixdim[0] * c, -pixdim[1] * s, 0, -40.5],
    [pixdim[0] * s, pixdim[1] * c, 0, 12.25],
    [0, 0, pixdim[2], -7],
  ];
  srow.forEach((row, r) => row.forEach((v, k) => hdr.writeFloatLE(v, 280 + r * 16 + k * 4)));
  hdr.write('n+1\0', 344, 'latin1');
  const data = new Int16Array(nx * ny * nz);
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++) {
        const u = x / nx - 0.5, v = y / ny - 0.5;
        const r = (u / 0.35) ** 2 + (v / (0.3 - 0.03 * Math.abs(z - nz / 2))) ** 2;
        data[x + nx * (y + ny * z)] = r < 1 ? 900 : 100 + ((x * 7 + y * 3) % 20);
      }
    }
  }
  const raw = Buffer.concat([hdr, Buffer.from(data.buffer)]);
  return { bytes: opts.gzip ? gzipSync(raw) : raw, srow, data };
}
