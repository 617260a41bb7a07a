import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { decodeImage } from '../../src/core/image/decode.js';
import { AppFailure } from '../../src/core/errors.js';
import type { RasterImage } from '../../src/core/image/raster.js';
import { ctSliceHu, rgbSecondaryCapture, writeDicom, xrayMonochrome1 } from '../helpers/dicom-fixtures.js';

const limits = { maxPixels: 4_000_000 };
async function failure(p: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AppFailure) return e.error;
    throw e;
  }
  throw new Error('expected a typed failure');
}

describe('DICOM input', () => {
  it('reads a CT slice in Hounsfield units with its spacing and UIDs', async () => {
    const ct = ctSliceHu(128, 0.7);
    const img = (await decodeImage(ct.bytes, limits)) as RasterImage;
    expect([img.width, img.height, img.format]).toEqual([128, 128, 'dicom']);
    expect(img.spacing).toEqual({ row: 0.7, col: 0.7 });
    expect(img.dicom?.modality).toBe('CT');
    expect(img.dicom?.seriesInstanceUid).toBe(ct.seriesUid);
    const v = img.dicom!.values!;
    for (const i of [0, 64 * 128 + 64, 64 * 128 + 40]) expect(v[i]).toBeCloseTo(ct.hu[i]);
    expect(img.dicom?.windowSource).toBe('percentiles');
  });

  it('renders a requested window: bone window [400, 1800] maps air, soft tissue and bone by hand', async () => {
    const ct = ctSliceHu(64);
    const img = await decodeImage(ct.bytes, { ...limits, window: [400, 1800] });
    const at = (x: number, y: number) => img.data[(y * 64 + x) * 3];
    expect(at(0, 0)).toBe(0); // -1000 HU, below the window
    expect(at(32, 32)).toBe(Math.round(((40 + 500) / 1800) * 255)); // soft tissue
    expect(at(32, 53)).toBe(Math.round(((700 + 500) / 1800) * 255)); // bone ring
    expect(img.dicom?.windowSource).toBe('request');
  });

  it('inverts MONOCHROME1: high stored values display dark', async () => {
    const xr = xrayMonochrome1(96);
    const img = await decodeImage(xr.bytes, limits);
    expect(img.spacing).toEqual({ row: 0.2, col: 0.2 });
    // stored 200 on the left, 20 on the right: MONOCHROME1 shows high values dark
    expect(img.data[(10 * 96 + 5) * 3]).toBeLessThan(img.data[(10 * 96 + 90) * 3]);
  });

  it('reads an RGB secondary capture', async () => {
    const img = await decodeImage(rgbSecondaryCapture(80, 64).bytes, limits);
    expect([img.width, img.height]).toEqual([80, 64]);
    expect(Array.from(img.data.subarray(3 * 10, 3 * 10 + 3))).toEqual([200, 20, 30]);
  });

  it('reads planar YBR_FULL colour: each plane in turn, converted to RGB by hand', async () => {
    const w = 16, h = 8, n = w * h;
    const px = new Uint8Array(n * 3);
    px.fill(100, 0, n); // Y plane
    px.fill(128, n, 2 * n); // Cb plane
    px.fill(200, 2 * n); // Cr plane
    const f = writeDicom({ SOPClassUID: '1.2.840.10008.5.1.4.1.1.7', Modality: 'OT', Rows: h, Columns: w, SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL', PlanarConfiguration: 1, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: px.buffer, _vrMap: { PixelData: 'OB' } });
    const img = await decodeImage(f.bytes, limits);
    // R = Y + 1.402 (Cr - 128), G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128), B = Y + 1.772 (Cb - 128)
    const rgb = [Math.round(100 + 1.402 * 72), Math.round(100 - 0.714136 * 72), 100];
    for (const i of [0, n - 1]) expect(Array.from(img.data.subarray(i * 3, i * 3 + 3))).toEqual(rgb);
  });

  it('reads a grey JPEG Baseline frame (encapsulated) with its values for windowing', async () => {
    const w = 32, h = 24;
    const grey = Buffer.alloc(w * h);
    for (let i = 0; i < w * h; i++) grey[i] = i % w < 16 ? 40 : 200;
    const jpeg = await sharp(grey, { raw: { width: w, height: h, channels: 1 } }).jpeg({ quality: 100 }).toBuffer();
    const frame = jpeg.buffer.slice(jpeg.byteOffset, jpeg.byteOffset + jpeg.byteLength);
    const f = writeDicom({ Modality: 'XA', Rows: h, Columns: w, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: [frame], _vrMap: { PixelData: 'OB' } }, '1.2.840.10008.1.2.4.50');
    const img = (await decodeImage(f.bytes, limits)) as RasterImage;
    expect([img.width, img.height, img.dicom?.transferSyntax]).toEqual([w, h, '1.2.840.10008.1.2.4.50']);
    const v = img.dicom!.values!;
    expect(Math.abs(v[5 * w + 4] - 40)).toBeLessThanOrEqual(2); // JPEG at quality 100: within 2 grey levels
    expect(Math.abs(v[5 * w + 28] - 200)).toBeLessThanOrEqual(2);
    expect(img.data[(5 * w + 4) * 3]).toBeLessThan(img.data[(5 * w + 28) * 3]);
    // a frame whose size disagrees with Rows/Columns is named
    const wrong = writeDicom({ Modality: 'XA', Rows: h + 8, Columns: w, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: [frame], _vrMap: { PixelData: 'OB' } }, '1.2.840.10008.1.2.4.50');
    expect((await failure(decodeImage(wrong.bytes, limits))).message).toContain('Rows/Columns');
  });

  it('reads the asked frame of a multi-frame file and refuses a frame that does not exist', async () => {
    const px = new Uint8Array(2 * 16 * 16);
    px.fill(10, 0, 256);
    px.fill(240, 256);
    const f = writeDicom({ Modality: 'OT', Rows: 16, Columns: 16, NumberOfFrames: 2, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, WindowCenter: 128, WindowWidth: 256, PixelData: px.buffer, _vrMap: { PixelData: 'OB' } });
    const a = await decodeImage(f.bytes, limits);
    const b = await decodeImage(f.bytes, { ...limits, frame: 1 });
    expect(a.data[0]).toBeLessThan(b.data[0]);
    expect(b.dicom?.frames).toBe(2);
    expect((await failure(decodeImage(f.bytes, { ...limits, frame: 2 }))).kind).toBe('invalid_argument');
  });

  it('refuses compressed transfer syntaxes by name', async () => {
    const f = writeDicom({ Modality: 'OT', Rows: 16, Columns: 16, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: new Uint8Array(256).buffer, _vrMap: { PixelData: 'OB' } }, '1.2.840.10008.1.2.4.90');
    const e = await failure(decodeImage(f.bytes, limits));
    expect(e.kind).toBe('unsupported_format');
    expect(e.message).toContain('JPEG 2000 Lossless');
  });

  it('names the tag when pixel data is short, and refuses absurd sizes and truncated files', async () => {
    const f = writeDicom({ Modality: 'OT', Rows: 64, Columns: 64, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: new Uint8Array(100).buffer, _vrMap: { PixelData: 'OB' } });
    const short = await failure(decodeImage(f.bytes, limits));
    expect(short.kind).toBe('bad_input');
    expect(short.message).toContain('7FE0,0010');
    const big = writeDicom({ Modality: 'OT', Rows: 60000, Columns: 60000, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: new Uint8Array(16).buffer, _vrMap: { PixelData: 'OB' } });
    expect((await failure(decodeImage(big.bytes, limits))).kind).toBe('too_large');
    const ct = ctSliceHu(64);
    expect((await failure(decodeImage(ct.bytes.subarray(0, 400), limits))).kind).toBe('bad_input');
  });
});
