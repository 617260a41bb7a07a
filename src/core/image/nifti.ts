import { gunzipSync, gzipSync } from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { fail } from '../errors.js';
import type { RasterImage } from './raster.js';
import { percentileWindow, renderWindow } from './dicom.js';

/** A NIfTI-1 volume: voxel values (scaled), geometry, and the raw header to copy into outputs. */
export interface NiftiVolume {
  dims: [number, number, number];
  /** Voxel size in mm along i, j, k. */
  spacing: [number, number, number];
  values: Float32Array;
  affine: number[][];
  littleEndian: boolean;
  /** The input's 348-byte header, so masks keep its qform/sform exactly. */
  header: Uint8Array;
}

const DATATYPES: Record<number, { name: string; bytes: number }> = {
  2: { name: 'uint8', bytes: 1 },
  4: { name: 'int16', bytes: 2 },
  8: { name: 'int32', bytes: 4 },
  16: { name: 'float32', bytes: 4 },
  64: { name: 'float64', bytes: 8 },
  256: { name: 'int8', bytes: 1 },
  512: { name: 'uint16', bytes: 2 },
  768: { name: 'uint32', bytes: 4 },
};

/**
 * Parses a NIfTI-1 file (.nii or .nii.gz, single file). Gzip is inflated with an output bound, the
 * header is checked against the data before anything large is allocated, and every failure is a
 * typed error naming the field.
 */
export function parseNifti(input: Uint8Array, limits: { maxVoxels: number }): NiftiVolume {
  let bytes = input;
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes, { maxOutputLength: 352 + limits.maxVoxels * 8 });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') fail('too_large', `the gzip data inflates beyond the voxel limit (${limits.maxVoxels} voxels)`, 'image');
      return fail('bad_input', `the gzip data is corrupt or truncated: ${(e as Error).message.slice(0, 100)}`, 'image');
    }
  }
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  if (bytes.length < 348) fail('bad_input', `the file is ${bytes.length} bytes, shorter than a NIfTI-1 header (348)`, 'image');
  if (nifti.isNIFTI2(ab)) fail('unsupported_format', 'NIfTI-2 files are not supported; save as NIfTI-1', 'image');
  if (!nifti.isNIFTI1(ab)) fail('bad_input', 'the file has no NIfTI-1 magic ("n+1") at byte 344; separate .hdr/.img pairs are not supported', 'image');
  let h: nifti.NIFTI1;
  try {
    h = nifti.readHeader(ab) as nifti.NIFTI1;
  } catch (e) {
    return fail('bad_input', `the NIfTI header could not be read: ${(e as Error).message.slice(0, 100)}`, 'image');
  }
  const nd = h.dims[0];
  if (!(nd >= 2 && nd <= 7)) fail('bad_input', `dim[0] is ${nd}; 2 to 7 dimensions expected`, 'dim');
  const dims = [h.dims[1], Math.max(1, h.dims[2]), nd >= 3 ? Math.max(1, h.dims[3]) : 1] as [number, number, number];
  for (let k = 4; k <= nd; k++) if (h.dims[k] > 1) fail('unsupported_format', `dim[${k}] is ${h.dims[k]}: 4D+ volumes (time series) are not supported`, 'dim');
  if (dims.some((d) => !Number.isInteger(d) || d < 1)) fail('bad_input', `dims ${dims.join('x')} are not positive integers`, 'dim');
  const voxels = dims[0] * dims[1] * dims[2];
  if (voxels > limits.maxVoxels) fail('too_large', `the volume is ${dims.join('x')} = ${voxels} voxels, over the limit of ${limits.maxVoxels}`, 'dim');
  const dt = DATATYPES[h.datatypeCode];
  if (!dt) fail('unsupported_format', `NIfTI datatype ${h.datatypeCode} is not supported (supported: ${Object.values(DATATYPES).map((d) => d.name).join(', ')})`, 'datatype');
  const offset = Math.trunc(h.vox_offset);
  if (!(offset >= 348) || offset + voxels * dt!.bytes > bytes.length) {
    fail('bad_input', `the data (${bytes.length - Math.max(0, offset)} bytes from vox_offset ${h.vox_offset}) is shorter than dims ${dims.join('x')} of ${dt!.name} need (${voxels * dt!.bytes})`, 'vox_offset');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, voxels * dt!.bytes);
  const le = h.littleEndian;
  const slope = h.scl_slope && Number.isFinite(h.scl_slope) ? h.scl_slope : 1;
  const inter = Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  const values = new Float32Array(voxels);
  for (let i = 0; i < voxels; i++) {
    let v: number;
    switch (h.datatypeCode) {
      case 2: v = dv.getUint8(i); break;
      case 4: v = dv.getInt16(i * 2, le); break;
      case 8: v = dv.getInt32(i * 4, le); break;
      case 16: v = dv.getFloat32(i * 4, le); break;
      case 64: v = dv.getFloat64(i * 8, le); break;
      case 256: v = dv.getInt8(i); break;
      case 512: v = dv.getUint16(i * 2, le); break;
      default: v = dv.getUint32(i * 4, le);
    }
    values[i] = Number.isFinite(v) ? v * slope + inter : 0;
  }
  const px = h.pixDims;
  const sp = [Math.abs(px[1]) || 1, Math.abs(px[2]) || 1, Math.abs(px[3]) || 1] as [number, number, number];
  return { dims, spacing: sp, values, affine: h.affine, littleEndian: le, header: bytes.slice(0, 348) };
}

export type SliceAxis = 0 | 1 | 2;

/** In-plane axes of a slice: columns run along the first, rows along the second. */
const PLANE: Record<SliceAxis, [number, number]> = { 0: [1, 2], 1: [0, 2], 2: [0, 1] };

/**
 * Visits every pixel of slice k along `axis`: columns follow the first in-plane voxel axis, rows the
 * second flipped (so its positive direction points up, as viewers show RAS volumes).
 */
function forEachSlicePixel(v: NiftiVolume, axis: SliceAxis, k: number, visit: (pixel: number, voxel: number) => void): { width: number; height: number } {
  const [a, b] = PLANE[axis];
  const width = v.dims[a], height = v.dims[b];
  const ijk = [0, 0, 0];
  ijk[axis] = k;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      ijk[a] = c;
      ijk[b] = height - 1 - r;
      visit(r * width + c, ijk[0] + v.dims[0] * (ijk[1] + v.dims[1] * ijk[2]));
    }
  }
  return { width, height };
}

/** One slice as a displayable image; placeSliceMask applies the exact inverse mapping. */
export function sliceImage(v: NiftiVolume, axis: SliceAxis, k: number, window?: [number, number]): RasterImage & { sliceValues: Float32Array } {
  const [a, b] = PLANE[axis];
  const vals = new Float32Array(v.dims[a] * v.dims[b]);
  const { width, height } = forEachSlicePixel(v, axis, k, (p, q) => (vals[p] = v.values[q]));
  const data = renderWindow(vals, window ?? percentileWindow(vals));
  return { width, height, data, format: 'nifti', spacing: { row: v.spacing[b], col: v.spacing[a] }, sliceValues: vals };
}

/** Writes a slice's mask (rows x cols as from sliceImage) into a volume mask. */
export function placeSliceMask(v: NiftiVolume, out: Uint8Array, axis: SliceAxis, k: number, mask: Uint8Array): void {
  forEachSlicePixel(v, axis, k, (p, q) => (out[q] = mask[p] ? 1 : 0));
}

/** A uint8 NIfTI-1 (.nii.gz) with the input's header (dims, pixdim, qform, sform) and the mask as data. */
export function writeNiftiMask(v: NiftiVolume, mask: Uint8Array, description: string): Buffer {
  const hdr = Buffer.from(v.header);
  const le = v.littleEndian;
  const w16 = (val: number, off: number) => (le ? hdr.writeInt16LE(val, off) : hdr.writeInt16BE(val, off));
  const wf = (val: number, off: number) => (le ? hdr.writeFloatLE(val, off) : hdr.writeFloatBE(val, off));
  w16(2, 70); // datatype uint8
  w16(8, 72); // bitpix
  wf(352, 108); // vox_offset
  wf(1, 112); // scl_slope
  wf(0, 116); // scl_inter
  wf(1, 124); // cal_max
  wf(0, 128); // cal_min
  hdr.fill(0, 148, 228);
  hdr.write(description.slice(0, 79), 148, 'latin1');
  hdr.fill(0, 328, 344); // intent_name
  w16(0, 68); // intent_code: none (a label volume)
  hdr.write('n+1\0', 344, 'latin1');
  return gzipSync(Buffer.concat([hdr, Buffer.alloc(4), Buffer.from(mask)]));
}
