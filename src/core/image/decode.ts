import sharp from 'sharp';
import { fail } from '../errors.js';
import type { RasterImage } from './raster.js';
import { decodeDicom } from './dicom.js';
import { readNifti, sliceImage } from './nifti.js';

export interface DecodeLimits {
  maxPixels: number;
  /** DICOM: which frame of a multi-frame file (default 0). */
  frame?: number;
  /** DICOM grey images: the display window [centre, width] in modality units, overriding the file's. */
  window?: [number, number];
}

/** Identifies a container from its first bytes. */
export function sniffFormat(bytes: Uint8Array): 'png' | 'jpeg' | 'webp' | 'tiff' | 'gif' | 'bmp' | 'dicom' | 'nifti' | 'gzip' | 'unknown' {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' && String.fromCharCode(...b.subarray(8, 12)) === 'WEBP') return 'webp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a) || (b[0] === 0x4d && b[1] === 0x4d && b[3] === 0x2a))) return 'tiff';
  if (b.length >= 6 && String.fromCharCode(...b.subarray(0, 3)) === 'GIF') return 'gif';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  if (b.length >= 132 && String.fromCharCode(...b.subarray(128, 132)) === 'DICM') return 'dicom';
  if (b.length >= 348 && (String.fromCharCode(...b.subarray(344, 347)) === 'n+1' || String.fromCharCode(...b.subarray(344, 347)) === 'ni1')) return 'nifti';
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  return 'unknown';
}

/** Reads width and height from a PNG header without decoding, so absurd sizes are refused first. */
export function pngHeaderSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes.length < 24) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') return undefined;
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

/**
 * Decodes PNG, JPEG, WebP or TIFF bytes to 8-bit RGB. Dimensions are checked against the pixel
 * limit from the header before any pixel is decoded (decompression bombs never allocate).
 */
export async function decodeImage(bytes: Uint8Array, limits: DecodeLimits): Promise<RasterImage> {
  if (bytes.length === 0) fail('bad_input', 'the image is empty (0 bytes)', 'image');
  const format = sniffFormat(bytes);
  if (format === 'dicom') return decodeDicom(bytes, limits, { frame: limits.frame, window: limits.window });
  if (format === 'nifti' || format === 'gzip') {
    const v = await readNifti(bytes, { maxVoxels: limits.maxPixels });
    if (v.dims[2] > 1) fail('invalid_argument', `this NIfTI is a ${v.dims.join('x')} volume; use the segment_volume operation (POST /v1/segment-volume) for volumes`, 'image');
    const { sliceValues: _values, ...img } = sliceImage(v, 2, 0, limits.window);
    return img;
  }
  if (format === 'unknown' || format === 'gif' || format === 'bmp') {
    fail('unsupported_format', 'the image is not a DICOM, NIfTI, PNG, JPEG, WebP or TIFF file (its first bytes match none of them)', 'image');
  }
  if (format === 'png') {
    const h = pngHeaderSize(bytes);
    if (!h) fail('bad_input', 'the PNG header is truncated or has no IHDR chunk', 'image');
    checkSize(h!.width, h!.height, limits);
  }
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>["metadata"]>>;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'error' }).metadata();
  } catch (e) {
    return fail('bad_input', `the ${format.toUpperCase()} header could not be read: ${shortReason(e)}`, 'image');
  }
  if (!meta.width || !meta.height) fail('bad_input', `the ${format.toUpperCase()} file has no dimensions`, 'image');
  checkSize(meta.width!, meta.height!, limits);
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(bytes, { limitInputPixels: limits.maxPixels, failOn: 'error' })
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    return fail('bad_input', `the ${format.toUpperCase()} data is truncated or corrupt: ${shortReason(e)}`, 'image');
  }
  const { width, height, channels } = raw.info;
  let data: Uint8Array;
  if (channels === 3) data = new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
  else {
    data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      const v = raw.data[i * channels];
      data[i * 3] = v;
      data[i * 3 + 1] = v;
      data[i * 3 + 2] = v;
    }
  }
  return { width, height, data, format };
}

function checkSize(width: number, height: number, limits: DecodeLimits): void {
  if (width < 8 || height < 8) fail('bad_input', `the image is ${width}x${height} pixels; at least 8x8 is needed`, 'image');
  if (width * height > limits.maxPixels) {
    fail('too_large', `the image is ${width}x${height} = ${width * height} pixels, over the limit of ${limits.maxPixels}`, 'image');
  }
}

function shortReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0].slice(0, 160);
}
