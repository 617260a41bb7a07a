import sharp from 'sharp';
import { components } from './mask-stats.js';

/** A binary mask as a grey PNG (0 / 255). */
export async function maskToPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  const px = Buffer.alloc(width * height);
  for (let i = 0; i < px.length; i++) px[i] = mask[i] ? 255 : 0;
  return sharp(px, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6 }).toBuffer();
}

/** round(min(1, v * scale) * 255) per value: the grey levels a map's PNG shows. */
export function toGreyLevels(values: Float32Array, scale = 1): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(Math.min(1, values[i] * scale) * 255)));
  return out;
}

/** An 8-bit grey image as PNG, resampled to `size` when given. */
export async function greyToPng(px: Uint8Array, width: number, height: number, size?: { width: number; height: number }): Promise<Buffer> {
  let img = sharp(px, { raw: { width, height, channels: 1 } });
  if (size && (size.width !== width || size.height !== height)) img = sharp(await img.resize(size.width, size.height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer(), { raw: { ...size, channels: 1 } });
  return img.toColourspace('b-w').png().toBuffer();
}

/** COCO uncompressed RLE: column-major run lengths starting with a run of zeros. */
export interface CocoRle {
  size: [number, number]; // [height, width]
  counts: number[];
}

export function maskToCocoRle(mask: Uint8Array, width: number, height: number): CocoRle {
  const counts: number[] = [];
  let cur = 0, run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== cur) {
        counts.push(run);
        run = 0;
        cur = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

export function cocoRleToMask(rle: CocoRle): Uint8Array {
  const [height, width] = rle.size;
  const mask = new Uint8Array(width * height);
  let pos = 0, v = 0;
  for (const c of rle.counts) {
    for (let k = 0; k < c; k++, pos++) {
      const x = Math.floor(pos / height), y = pos % height;
      if (v) mask[y * width + x] = 1;
    }
    v ^= 1;
  }
  return mask;
}

/**
 * The outer boundary of each connected component as a closed ring of pixel-corner coordinates
 * ([x, y] in image pixels), traced along the crack edges from the component's top-left pixel.
 * Holes are not reported. Returned as GeoJSON-like MultiPolygon coordinates.
 */
export function maskToPolygons(mask: Uint8Array, width: number, height: number, maxRings = 256): number[][][][] {
  const { labels, count } = components(mask, width, height);
  const started = new Uint8Array(count + 1);
  const polys: number[][][][] = [];
  for (let i = 0; i < width * height && polys.length < maxRings; i++) {
    const l = labels[i];
    if (!l || started[l]) continue;
    started[l] = 1;
    const x = i % width, y = (i - x) / width;
    const inside = (px: number, py: number) => px >= 0 && py >= 0 && px < width && py < height && labels[py * width + px] === l;
    polys.push([traceRing(inside, x, y, width, height)]);
  }
  return polys;
}

// Direction order: right, down, left, up, in corner coordinates.
const DX = [1, 0, -1, 0];
const DY = [0, 1, 0, -1];

function traceRing(inside: (x: number, y: number) => boolean, sx: number, sy: number, width: number, height: number): number[][] {
  // Walk the crack edges with the inside on the right-hand side, starting along the top edge.
  let x = sx, y = sy, dir = 0;
  const ring: number[][] = [[x, y]];
  const limit = 4 * (width + 1) * (height + 1);
  for (let steps = 0; steps < limit; steps++) {
    x += DX[dir];
    y += DY[dir];
    if (x === sx && y === sy) break;
    const ahead = cellsAhead(x, y, dir);
    const l = inside(ahead.left[0], ahead.left[1]);
    const r = inside(ahead.right[0], ahead.right[1]);
    const nd = l && r ? (dir + 3) % 4 : r ? dir : (dir + 1) % 4;
    if (nd !== dir) ring.push([x, y]);
    dir = nd;
  }
  ring.push([sx, sy]);
  return ring;
}

function cellsAhead(x: number, y: number, dir: number): { left: [number, number]; right: [number, number] } {
  // At corner (x, y), the four pixels around it are (x-1,y-1), (x,y-1), (x-1,y), (x,y).
  switch (dir) {
    case 0: return { left: [x, y - 1], right: [x, y] };
    case 1: return { left: [x, y], right: [x - 1, y] };
    case 2: return { left: [x - 1, y], right: [x - 1, y - 1] };
    default: return { left: [x - 1, y - 1], right: [x, y - 1] };
  }
}
