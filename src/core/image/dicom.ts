import dicomParser from 'dicom-parser';
import sharp from 'sharp';
import { fail } from '../errors.js';
import type { RasterImage } from './raster.js';

/** Transfer syntaxes by UID: which we decode, and the names we give the ones we refuse. */
const NATIVE_SYNTAXES: Record<string, string> = {
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
};
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const REFUSED_SYNTAXES: Record<string, string> = {
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian (retired)',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended (12-bit)',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
};

/** What a DICOM file carries beyond display pixels: modality values (e.g. Hounsfield units) and geometry. */
export interface DicomSource {
  kind: 'dicom';
  modality: string;
  photometric: string;
  /** Modality values after rescale slope/intercept, one per pixel (grey images only). */
  values?: Float32Array;
  /** The window the default rendering used: [centre, width] in modality units. */
  window?: [number, number];
  windowSource?: 'request' | 'dicom' | 'percentiles' | 'structure';
  monochrome1: boolean;
  frames: number;
  frame: number;
  transferSyntax: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  sopClassUid?: string;
  frameOfReferenceUid?: string;
  /** Copied only so a DICOM SEG can reference its source; never logged. */
  patient?: { name?: string; id?: string; birthDate?: string; sex?: string };
  /** The source's study attributes, carried into a DICOM SEG so that it sits in the same study; never logged. */
  study?: { date?: string; time?: string; accessionNumber?: string; referringPhysicianName?: string; id?: string; description?: string };
  positionReferenceIndicator?: string;
}

export type DicomRaster = RasterImage & { dicom: DicomSource };

const num = (s: string | undefined): number | undefined => {
  if (s === undefined || s.trim() === '') return undefined;
  const v = Number(s.split('\\')[0]);
  return Number.isFinite(v) ? v : undefined;
};

/** The pixel layout a DICOM header declares, checked against what this decoder handles and the pixel limit. */
interface PixelFormat {
  width: number;
  height: number;
  /** Samples per pixel: 1 (grey) or 3 (colour). */
  spp: number;
  /** Bits allocated: 8 or 16. */
  bits: number;
  signed: boolean;
  photometric: string;
  frames: number;
}

function parseDataSet(bytes: Uint8Array): dicomParser.DataSet {
  try {
    return dicomParser.parseDicom(bytes);
  } catch (e) {
    const m = typeof e === 'string' ? e : e instanceof Error ? e.message : (e as { exception?: string }).exception ?? 'unreadable';
    return fail('bad_input', `the DICOM file could not be parsed: ${String(m).slice(0, 160)}`, 'image');
  }
}

/** The transfer syntax, refused with its name unless native little endian or JPEG Baseline. */
function transferSyntax(ds: dicomParser.DataSet): string {
  const ts = ds.string('x00020010')?.trim() ?? '1.2.840.10008.1.2';
  if (!NATIVE_SYNTAXES[ts] && ts !== JPEG_BASELINE) {
    fail('unsupported_format', `DICOM transfer syntax ${ts} (${REFUSED_SYNTAXES[ts] ?? 'unknown'}) is not supported; supported: ${[...Object.values(NATIVE_SYNTAXES), 'JPEG Baseline (8-bit)'].join(', ')}`, 'image');
  }
  return ts;
}

/** Rows, columns, samples, bits and frames from the header; each bad value fails naming its tag. */
function pixelFormat(ds: dicomParser.DataSet, limits: { maxPixels: number }, frame: number): PixelFormat {
  const rows = ds.uint16('x00280010');
  const cols = ds.uint16('x00280011');
  if (!rows || !cols) fail('bad_input', 'the DICOM file has no image: Rows (0028,0010) or Columns (0028,0011) is missing or zero', 'image');
  const spp = ds.uint16('x00280002') ?? 1;
  if (spp !== 1 && spp !== 3) fail('bad_input', `Samples per Pixel (0028,0002) is ${spp}; 1 or 3 expected`, 'image');
  const bits = ds.uint16('x00280100') ?? 8;
  if (bits !== 8 && bits !== 16) fail('unsupported_format', `Bits Allocated (0028,0100) is ${bits}; 8 or 16 are supported`, 'image');
  const photometric = (ds.string('x00280004') ?? (spp === 3 ? 'RGB' : 'MONOCHROME2')).trim().toUpperCase();
  const frames = Math.max(1, Math.trunc(num(ds.string('x00280008')) ?? 1));
  if (!(Number.isInteger(frame) && frame >= 0 && frame < frames)) fail('invalid_argument', `frame ${frame} does not exist; the file has ${frames} frame(s)`, 'frame');
  if (rows! < 8 || cols! < 8) fail('bad_input', `the DICOM image is ${cols}x${rows} pixels; at least 8x8 is needed`, 'image');
  if (rows! * cols! > limits.maxPixels) fail('too_large', `the DICOM image is ${cols}x${rows} = ${rows! * cols!} pixels, over the limit of ${limits.maxPixels}`, 'image');
  return { width: cols!, height: rows!, spp, bits, signed: ds.uint16('x00280103') === 1, photometric, frames };
}

/** The identifiers, patient and study attributes a DICOM SEG of this image refers to or copies. */
function sourceAttributes(ds: dicomParser.DataSet, f: PixelFormat, frame: number, ts: string): DicomSource {
  return {
    kind: 'dicom',
    modality: (ds.string('x00080060') ?? 'OT').trim(),
    photometric: f.photometric,
    monochrome1: f.photometric === 'MONOCHROME1',
    frames: f.frames,
    frame,
    transferSyntax: ts,
    studyInstanceUid: ds.string('x0020000d'),
    seriesInstanceUid: ds.string('x0020000e'),
    sopInstanceUid: ds.string('x00080018'),
    sopClassUid: ds.string('x00080016'),
    frameOfReferenceUid: ds.string('x00200052'),
    patient: { name: ds.string('x00100010'), id: ds.string('x00100020'), birthDate: ds.string('x00100030'), sex: ds.string('x00100040') },
    study: {
      date: ds.string('x00080020'),
      time: ds.string('x00080030'),
      accessionNumber: ds.string('x00080050'),
      referringPhysicianName: ds.string('x00080090'),
      id: ds.string('x00200010'),
      description: ds.string('x00081030'),
    },
    positionReferenceIndicator: ds.string('x00201040'),
  };
}

/** Pixel Spacing (or, for projection images, Imager Pixel Spacing) when both values are positive. */
function pixelSpacing(ds: dicomParser.DataSet): RasterImage['spacing'] {
  const spacingStr = ds.string('x00280030') ?? ds.string('x00181164');
  if (!spacingStr) return undefined;
  const [r, c] = spacingStr.split('\\').map(Number);
  return r > 0 && c > 0 && Number.isFinite(r) && Number.isFinite(c) ? { row: r, col: c } : undefined;
}

/** One JPEG Baseline frame to RGB; its size must match Rows/Columns. */
async function decodeJpegFrame(ds: dicomParser.DataSet, pixelEl: dicomParser.Element, f: PixelFormat, frame: number, limits: { maxPixels: number }): Promise<Uint8Array> {
  if (!pixelEl.encapsulatedPixelData) fail('bad_input', 'Pixel Data (7FE0,0010) is not encapsulated although the transfer syntax is JPEG Baseline', 'image');
  let jpeg: Uint8Array;
  try {
    jpeg = f.frames === 1 && !pixelEl.basicOffsetTable?.length
      ? dicomParser.readEncapsulatedPixelDataFromFragments(ds, pixelEl, 0, pixelEl.fragments!.length)
      : dicomParser.readEncapsulatedImageFrame(ds, pixelEl, frame);
  } catch (e) {
    return fail('bad_input', `the encapsulated JPEG frame could not be read: ${String((e as Error).message ?? e).slice(0, 120)}`, 'image');
  }
  let out: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    out = await sharp(jpeg, { limitInputPixels: limits.maxPixels }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    return fail('bad_input', `the JPEG frame is corrupt: ${String((e as Error).message).split('\n')[0].slice(0, 120)}`, 'image');
  }
  if (out.info.width !== f.width || out.info.height !== f.height) fail('bad_input', `the JPEG frame is ${out.info.width}x${out.info.height} but Rows/Columns say ${f.width}x${f.height}`, 'image');
  return new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
}

/** One native frame: colour to RGB (planar or interleaved, YBR converted), or grey to modality values (rescale slope and intercept applied). */
function decodeNativeFrame(ds: dicomParser.DataSet, bytes: Uint8Array, pixelEl: dicomParser.Element, f: PixelFormat, frame: number): { rgb: Uint8Array } | { values: Float32Array } {
  if (pixelEl.encapsulatedPixelData) fail('bad_input', 'Pixel Data (7FE0,0010) is encapsulated but the transfer syntax is native', 'image');
  const { width, height, spp, bits, frames } = f;
  const n = width * height;
  const frameBytes = n * spp * (bits / 8);
  if (pixelEl.length < frameBytes * frames || pixelEl.dataOffset + frameBytes * frames > bytes.length) {
    fail('bad_input', `Pixel Data (7FE0,0010) holds ${Math.min(pixelEl.length, bytes.length - pixelEl.dataOffset)} bytes; ${frameBytes * frames} expected for ${frames} frame(s) of ${width}x${height}x${spp} at ${bits} bits`, 'image');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + pixelEl.dataOffset + frame * frameBytes, frameBytes);
  if (spp === 3) {
    const planar = ds.uint16('x00280006') === 1;
    const rgb = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        const idx = planar ? c * n + i : i * 3 + c;
        rgb[i * 3 + c] = bits === 8 ? dv.getUint8(idx) : dv.getUint16(idx * 2, true) >> 8;
      }
    }
    if (f.photometric.startsWith('YBR_FULL')) ybrToRgb(rgb);
    return { rgb };
  }
  const slope = num(ds.string('x00281053')) ?? 1;
  const intercept = num(ds.string('x00281052')) ?? 0;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const raw = bits === 8 ? (f.signed ? dv.getInt8(i) : dv.getUint8(i)) : f.signed ? dv.getInt16(i * 2, true) : dv.getUint16(i * 2, true);
    values[i] = raw * slope + intercept;
  }
  return { values };
}

/**
 * Decodes one frame of a DICOM Part 10 file to display pixels, keeping modality values so grey
 * images can be re-windowed per prompt. Malformed files fail with `bad_input` naming the tag;
 * transfer syntaxes without a decoder fail with `unsupported_format` naming the syntax.
 */
export async function decodeDicom(bytes: Uint8Array, limits: { maxPixels: number }, opts: { frame?: number; window?: [number, number] } = {}): Promise<DicomRaster> {
  const ds = parseDataSet(bytes);
  const ts = transferSyntax(ds);
  const frame = opts.frame ?? 0;
  const f = pixelFormat(ds, limits, frame);
  const pixelEl = ds.elements.x7fe00010;
  if (!pixelEl) fail('bad_input', 'the DICOM file has no Pixel Data (7FE0,0010)', 'image');
  const source = sourceAttributes(ds, f, frame, ts);
  const spacing = pixelSpacing(ds);
  let rgb: Uint8Array;
  if (ts === JPEG_BASELINE) {
    const jpeg = await decodeJpegFrame(ds, pixelEl!, f, frame, limits);
    if (f.spp === 1) source.values = Float32Array.from({ length: f.width * f.height }, (_, i) => jpeg[i * 3]);
    rgb = jpeg;
  } else {
    const decoded = decodeNativeFrame(ds, bytes, pixelEl!, f, frame);
    if ('values' in decoded) source.values = decoded.values;
    rgb = 'rgb' in decoded ? decoded.rgb : new Uint8Array(0); // grey: rendered below
  }
  if (source.values && f.spp === 1) {
    const c = num(ds.string('x00281050')), w = num(ds.string('x00281051'));
    const dicomWindow: [number, number] | undefined = c !== undefined && w !== undefined && w > 0 ? [c, w] : undefined;
    const win = opts.window ?? dicomWindow ?? percentileWindow(source.values);
    source.window = win;
    source.windowSource = opts.window ? 'request' : dicomWindow ? 'dicom' : 'percentiles';
    rgb = renderWindow(source.values, win, source.monochrome1);
  } else if (source.monochrome1) {
    for (let i = 0; i < rgb.length; i++) rgb[i] = 255 - rgb[i];
  }
  return { width: f.width, height: f.height, data: rgb, format: 'dicom', ...(spacing ? { spacing } : {}), dicom: source };
}

/** Grey modality values through a window ([centre, width]) to 8-bit RGB; MONOCHROME1 is inverted. */
export function renderWindow(values: Float32Array, [centre, width]: [number, number], invert = false): Uint8Array {
  const lo = centre - width / 2;
  const out = new Uint8Array(values.length * 3);
  for (let i = 0; i < values.length; i++) {
    let v = Math.round(((values[i] - lo) / width) * 255);
    v = v < 0 ? 0 : v > 255 ? 255 : v;
    if (invert) v = 255 - v;
    out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = v;
  }
  return out;
}

/** A window spanning the 1st to 99th percentile of the values (robust to outliers such as air or metal). */
export function percentileWindow(values: Float32Array): [number, number] {
  const step = Math.max(1, Math.floor(values.length / 20000));
  const sample: number[] = [];
  for (let i = 0; i < values.length; i += step) sample.push(values[i]);
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(0.01 * (sample.length - 1))], hi = sample[Math.ceil(0.99 * (sample.length - 1))];
  const width = Math.max(hi - lo, 1);
  return [lo + width / 2, width];
}

function ybrToRgb(px: Uint8Array): void {
  for (let i = 0; i < px.length; i += 3) {
    const y = px[i], cb = px[i + 1] - 128, cr = px[i + 2] - 128;
    px[i] = clamp(y + 1.402 * cr);
    px[i + 1] = clamp(y - 0.344136 * cb - 0.714136 * cr);
    px[i + 2] = clamp(y + 1.772 * cb);
  }
}
const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));
