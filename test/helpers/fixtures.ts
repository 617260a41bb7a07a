import sharp from 'sharp';
import { crc32 } from 'node:zlib';

/** A grey PNG drawn by a function of (x, y) -> 0..255. */
export async function greyPng(width: number, height: number, f: (x: number, y: number) => number): Promise<Buffer> {
  const px = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px[y * width + x] = Math.max(0, Math.min(255, Math.round(f(x, y))));
  return sharp(px, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

/** A chest-X-ray-like picture: bright body, two dark lung fields, a brighter heart shadow. */
export function chestLikePng(size = 256): Promise<Buffer> {
  return greyPng(size, size, (x, y) => {
    const u = x / size, v = y / size;
    const inEllipse = (cx: number, cy: number, rx: number, ry: number) => ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 < 1;
    let g = 170;
    if (inEllipse(0.32, 0.48, 0.15, 0.3) || inEllipse(0.68, 0.48, 0.15, 0.3)) g = 60;
    if (inEllipse(0.56, 0.62, 0.13, 0.12)) g = 200;
    return g + 10 * Math.sin(x * 0.3) * Math.cos(y * 0.2);
  });
}

/**
 * A drawn posteroanterior chest radiograph, closer to JSRT than chestLikePng: bright soft tissue and
 * mediastinum, two grey lung fields (the patient's right lung on the image's left, wider; the left
 * one on the image's right), a bright heart shadow over the lower medial part of the left lung,
 * rib bands, clavicles, a 2 px blur and deterministic grain. Width and height may differ.
 */
export async function drawnChestRadiographPng(width = 256, height = 256): Promise<Buffer> {
  const inside = (u: number, v: number, cx: number, cy: number, rx: number, ry: number, p = 2) => Math.abs((u - cx) / rx) ** p + Math.abs((v - cy) / ry) ** p < 1;
  const drawn = await greyPng(width, height, (x, y) => {
    const u = x / width, v = y / height;
    const lung = inside(u, v, 0.3, 0.47, 0.15, 0.31, 2.4) || inside(u, v, 0.7, 0.46, 0.14, 0.33, 2.4);
    let g = lung ? 150 : 232;
    if (inside(u, v, 0.57, 0.66, 0.16, 0.14)) g = 228;
    else if (lung && Math.sin(v * 55 + Math.abs(u - 0.5) * 10) > 0.55) g += 18;
    const side = Math.abs(u - 0.5);
    if (Math.abs(v - (0.14 + 0.25 * side)) < 0.018 && side > 0.06 && side < 0.33) g = 240;
    return g;
  });
  const px = await sharp(drawn).blur(2).extractChannel(0).raw().toBuffer();
  let seed = 12345;
  for (let i = 0; i < px.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    px[i] = Math.max(0, Math.min(255, px[i] + ((seed >>> 16) % 11) - 5));
  }
  return sharp(px, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/** A PNG whose header claims width x height but carries almost no pixel data (a decompression bomb's shape). */
export function pngHeaderOnly(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk('IEND', Buffer.alloc(0))]);
}
