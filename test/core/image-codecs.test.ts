import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { cocoRleToMask, maskToCocoRle, maskToPng, maskToPolygons } from '../../src/core/image/mask-encode.js';
import { components, maskStats } from '../../src/core/image/mask-stats.js';
import { seededRandom } from '../../src/core/stats.js';
import { letterbox, letterboxGeometry, resizeRgb, roundHalfEven, toTensorData } from '../../src/core/image/resize.js';
import { decodeImage, sniffFormat } from '../../src/core/image/decode.js';
import { AppFailure } from '../../src/core/errors.js';
import { greyPng, pngHeaderOnly } from '../helpers/fixtures.js';

function rect(w: number, h: number, x0: number, y0: number, rw: number, rh: number): Uint8Array {
  const m = new Uint8Array(w * h);
  for (let y = y0; y < y0 + rh; y++) for (let x = x0; x < x0 + rw; x++) m[y * w + x] = 1;
  return m;
}

describe('mask encodings', () => {
  it('COCO RLE is column-major, starts with zeros and round-trips', () => {
    const m = rect(5, 4, 1, 1, 2, 2);
    const rle = maskToCocoRle(m, 5, 4);
    expect(rle.size).toEqual([4, 5]);
    // column 0: 4 zeros; column 1: 1 zero, 2 ones, 1 zero; column 2 the same; then 8 zeros
    expect(rle.counts).toEqual([5, 2, 2, 2, 9]);
    expect(Array.from(cocoRleToMask(rle))).toEqual(Array.from(m));
  });

  it('RLE of an empty mask is one run of zeros', () => {
    expect(maskToCocoRle(new Uint8Array(12), 4, 3).counts).toEqual([12]);
  });

  it('polygon of a rectangle is its four corners in pixel-corner coordinates', () => {
    const polys = maskToPolygons(rect(8, 8, 2, 3, 3, 2), 8, 8);
    expect(polys).toHaveLength(1);
    const ring = polys[0][0];
    expect(ring[0]).toEqual(ring[ring.length - 1]);
    expect(new Set(ring.map((p) => p.join(',')))).toEqual(new Set(['2,3', '5,3', '5,5', '2,5']));
  });

  it('polygons: one ring per component, holes not reported', () => {
    const m = rect(10, 10, 0, 0, 4, 4);
    for (let y = 6; y < 9; y++) for (let x = 6; x < 9; x++) m[y * 10 + x] = 1;
    m[1 * 10 + 1] = 0; // a hole
    expect(maskToPolygons(m, 10, 10)).toHaveLength(2);
  });

  it('mask stats give area, bbox, centroid and 8-connected components', () => {
    const m = rect(10, 10, 2, 2, 2, 2);
    m[4 * 10 + 4] = 1; // diagonal neighbour joins the square
    m[9 * 10 + 9] = 1;
    const s = maskStats(m, 10, 10);
    expect(s.areaPx).toBe(6);
    expect(s.bbox).toEqual([2, 2, 8, 8]);
    expect(s.components).toBe(2);
    expect(s.largestComponentPx).toBe(5);
    expect(maskStats(new Uint8Array(4), 2, 2)).toMatchObject({ areaPx: 0, bbox: null, components: 0 });
  });

  it('mask stats count the components a flood fill labels, on random masks of every density, and read only the rectangle given', () => {
    const rnd = seededRandom(11);
    for (let t = 0; t < 200; t++) {
      const w = 3 + Math.floor(rnd() * 40), h = 3 + Math.floor(rnd() * 40), density = rnd();
      const m = Uint8Array.from({ length: w * h }, () => (rnd() < density ? 1 : 0));
      const flood = components(m, w, h);
      const s = maskStats(m, w, h);
      expect(s.components).toBe(flood.count);
      expect(s.largestComponentPx).toBe(flood.sizes.length ? Math.max(...flood.sizes) : 0);
      // a rectangle holding every mask pixel gives the same figures
      const b = s.bbox;
      expect(maskStats(m, w, h, b ? { x: b[0], y: b[1], w: b[2], h: b[3] } : null)).toEqual(s);
    }
  });

  it('mask PNG decodes back to the same size and pixels', async () => {
    const m = rect(7, 5, 1, 1, 3, 2);
    const png = await maskToPng(m, 7, 5);
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([7, 5, 1]);
    const { data } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect(Array.from(data).map((v) => (v ? 1 : 0))).toEqual(Array.from(m));
  });
});

describe('letterbox', () => {
  it('rounds sizes half-to-even as the Python training code does', () => {
    expect(roundHalfEven(2.5)).toBe(2);
    expect(roundHalfEven(3.5)).toBe(4);
    expect(letterboxGeometry(216, 256, 256)).toMatchObject({ innerW: 216, innerH: 256, left: 20, top: 0 });
    expect(letterboxGeometry(384, 308, 256)).toMatchObject({ innerW: 256, innerH: 205, left: 0, top: 25 });
  });

  it('centres the image and pads with zeros; a flat image stays flat', () => {
    const img = { width: 100, height: 50, data: new Uint8Array(100 * 50 * 3).fill(200), format: 'raw' };
    const { pixels, box } = letterbox(img, 64);
    expect(box).toMatchObject({ innerW: 64, innerH: 32, top: 16 });
    expect(pixels[0]).toBe(0);
    expect(pixels[(32 * 64 + 32) * 3]).toBe(200);
  });

  it('resamples a grey image to the bytes each channel of a colour image gets, at every size', () => {
    const rnd = seededRandom(31);
    for (let t = 0; t < 40; t++) {
      const w = 1 + Math.floor(rnd() * 300), h = 1 + Math.floor(rnd() * 300), ow = 1 + Math.floor(rnd() * 200), oh = 1 + Math.floor(rnd() * 200);
      const grey = new Uint8Array(w * h * 3);
      for (let i = 0; i < w * h; i++) grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = Math.floor(rnd() * 256);
      // one blue value moved: the colour path, whose red and green planes are the grey plane
      const colour = grey.slice();
      colour[2] ^= 1;
      const a = resizeRgb({ width: w, height: h, data: grey }, ow, oh), b = resizeRgb({ width: w, height: h, data: colour }, ow, oh);
      const differ = Array.from({ length: ow * oh }, (_, i) => i).filter((i) => a[3 * i] !== b[3 * i] || a[3 * i + 1] !== b[3 * i + 1]);
      expect(differ).toEqual([]);
    }
  });

  it('normalises pixels into planes as (v / 255 - mean) / std, each value rounded to float32 once', () => {
    const w = 16, h = 16, px = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 7) % 256);
    for (const [mean, std] of [[0.5, 0.5], [0.485, 0.229]]) {
      const t = toTensorData(px, w, h, mean, std);
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < w * h; i++) expect(t[c * w * h + i]).toBe(Math.fround((px[3 * i + c] / 255 - mean) / std));
      }
    }
  });
});

describe('image decoding', () => {
  const limits = { maxPixels: 4_000_000 };
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
      return 'ok';
    } catch (e) {
      if (e instanceof AppFailure) return e.error.kind;
      throw e;
    }
  };

  it('decodes a grey PNG to RGB', async () => {
    const img = await decodeImage(await greyPng(20, 10, (x) => x * 10), limits);
    expect([img.width, img.height, img.data.length]).toEqual([20, 10, 600]);
    expect(img.data[3 * 5]).toBe(50);
  });

  it('refuses a huge PNG header before decoding, truncated data, tiny and unknown files', async () => {
    expect(await code(decodeImage(pngHeaderOnly(100000, 100000), limits))).toBe('too_large');
    const png = await greyPng(64, 64, (x, y) => x ^ y);
    expect(await code(decodeImage(png.subarray(0, png.length - 40), limits))).toBe('bad_input');
    expect(await code(decodeImage(await greyPng(1, 1, () => 0), limits))).toBe('bad_input');
    expect(await code(decodeImage(Buffer.from('hello world, not an image'), limits))).toBe('unsupported_format');
    expect(await code(decodeImage(new Uint8Array(0), limits))).toBe('bad_input');
  });

  it('recognises containers by their magic bytes', () => {
    expect(sniffFormat(pngHeaderOnly(2, 2))).toBe('png');
    expect(sniffFormat(Buffer.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('jpeg');
    const dcm = Buffer.alloc(140);
    dcm.write('DICM', 128);
    expect(sniffFormat(dcm)).toBe('dicom');
  });
});
