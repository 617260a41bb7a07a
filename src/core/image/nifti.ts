import { setImmediate as nextTurn } from 'node:timers/promises';
import { createGunzip, createGzip } from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { AppFailure, fail } from '../errors.js';
import type { RasterImage } from './raster.js';
import { percentileWindow, renderWindow } from './dicom.js';

/**
 * A NIfTI-1 volume: its voxel data as stored (decoded a voxel at a time, so a volume never exists
 * as float32), geometry, and the raw header to copy into outputs.
 */
export interface NiftiVolume {
  dims: [number, number, number];
  /** Voxel size in mm along i, j, k. */
  spacing: [number, number, number];
  affine: number[][];
  littleEndian: boolean;
  /** The input's 348-byte header, so masks keep its qform/sform exactly. */
  header: Uint8Array;
  /** The voxel data as stored (from voxel firstVoxel on: a volume may hold only the slices asked for), and how to read it. */
  data: DataView;
  firstVoxel: number;
  datatype: number;
  slope: number;
  inter: number;
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

/** Bytes a NIfTI-1 header with its extension flag occupies before vox_offset may start. */
const HEADER_BYTES = 352;

/** Limits checked from the header: voxels, and bytes of voxel data as stored. */
export interface NiftiLimits {
  maxVoxels: number;
  maxBytes?: number;
}

/** What the header says, checked before any voxel is read or inflated. */
interface HeaderFacts {
  h: nifti.NIFTI1;
  dims: [number, number, number];
  voxels: number;
  dt: { name: string; bytes: number };
  offset: number;
  /** vox_offset + voxels x bytes per voxel: the file size the header promises. */
  expectedBytes: number;
}

function readHeaderFacts(head: Uint8Array, limits: NiftiLimits): HeaderFacts {
  const ab = head.buffer.slice(head.byteOffset, head.byteOffset + head.byteLength) as ArrayBuffer;
  if (head.length < 348) fail('bad_input', `the file is ${head.length} bytes, shorter than a NIfTI-1 header (348)`, 'image');
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
  if (!(offset >= 348)) fail('bad_input', `vox_offset ${h.vox_offset} lies inside the header`, 'vox_offset');
  const dataBytes = voxels * dt!.bytes;
  if (limits.maxBytes !== undefined && dataBytes > limits.maxBytes) fail('too_large', `the volume's voxel data is ${dims.join('x')} of ${dt!.name} = ${dataBytes} bytes, over the limit of ${limits.maxBytes}`, 'dim');
  return { h, dims, voxels, dt: dt!, offset, expectedBytes: offset + voxels * dt!.bytes };
}

/** The first n bytes a gzip stream inflates to (fewer when it is shorter), without inflating the rest. */
function inflateHead(gz: Uint8Array, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = createGunzip();
    const parts: Buffer[] = [];
    let got = 0, done = false;
    z.on('data', (c: Buffer) => {
      parts.push(c);
      got += c.length;
      if (got >= n && !done) {
        done = true;
        resolve(Buffer.concat(parts).subarray(0, n));
        z.destroy();
      }
    });
    z.on('end', () => {
      if (!done) resolve(Buffer.concat(parts));
      done = true;
    });
    z.on('error', (e) => {
      if (!done) reject(e);
      done = true;
    });
    z.end(gz);
  });
}

function gzipFailure(e: unknown): never {
  return fail('bad_input', `the gzip data is corrupt or truncated: ${(e as Error).message.slice(0, 100)}`, 'image');
}

/**
 * Reads a NIfTI-1 file (.nii or .nii.gz, single file). A gzip file's header is inflated first and
 * checked (dims, datatype, voxel and byte limits) before the rest is inflated; the rest is then
 * inflated as a stream, off the event loop, keeping only the voxels `keep` asks for (the slices a
 * request segments, when they are contiguous) and stopping as soon as the data runs past the size
 * the header declares. So a small file that would inflate to gigabytes is refused early, and a
 * large volume of which one slice is asked costs that slice. Voxels stay as stored; every failure
 * is a typed error naming the field.
 */
export async function readNifti(input: Uint8Array, limits: NiftiLimits, keep?: (dims: [number, number, number]) => [number, number]): Promise<NiftiVolume> {
  const gz = input.length >= 2 && input[0] === 0x1f && input[1] === 0x8b;
  let head = input;
  if (gz) {
    try {
      head = await inflateHead(input, HEADER_BYTES);
    } catch (e) {
      gzipFailure(e);
    }
  }
  const facts = readHeaderFacts(head, limits);
  if (!gz) return volumeOf(input, facts);
  const [first, end] = keep ? keep(facts.dims) : [0, facts.voxels];
  const kept = await inflateRange(input, facts, first * facts.dt.bytes, end * facts.dt.bytes);
  return { ...volumeOf(Buffer.concat([head.subarray(0, 348), Buffer.alloc(facts.offset - 348)]), facts, true), data: new DataView(kept.buffer, kept.byteOffset, kept.byteLength), firstVoxel: first };
}

/**
 * Inflates a gzip NIfTI as a stream and returns the voxel bytes [from, to) of its data (counted
 * from vox_offset); fails as soon as the stream runs past the declared size (with 1 MiB of slack
 * for trailing bytes), or when it ends short of it.
 */
function inflateRange(gz: Uint8Array, f: HeaderFacts, from: number, to: number): Promise<Buffer> {
  const expected = f.expectedBytes;
  const out = Buffer.alloc(to - from);
  const start = f.offset + from, stop = f.offset + to;
  return new Promise((resolve, reject) => {
    const z = createGunzip();
    let pos = 0, failed = false;
    const refuse = (e: unknown) => {
      if (failed) return;
      failed = true;
      z.destroy();
      reject(e);
    };
    z.on('data', (c: Buffer) => {
      const a = Math.max(start, pos), b = Math.min(stop, pos + c.length);
      if (b > a) c.copy(out, a - start, a - pos, b - pos);
      pos += c.length;
      if (pos > expected + 1024 * 1024) refuse(new AppFailure({ kind: 'bad_input', message: `the gzip data inflates to more than the ${expected} bytes its header declares`, field: 'image' }));
    });
    z.on('end', () => {
      if (failed) return;
      if (pos < expected) return refuse(new AppFailure({ kind: 'bad_input', message: `the data (${pos - f.offset} bytes from vox_offset ${f.h.vox_offset}) is shorter than dims ${f.dims.join('x')} of ${f.dt.name} need (${f.voxels * f.dt.bytes})`, field: 'vox_offset' }));
      resolve(out);
    });
    z.on('error', (e) => {
      try {
        gzipFailure(e);
      } catch (failure) {
        refuse(failure);
      }
    });
    z.end(gz);
  });
}

function volumeOf(bytes: Uint8Array, f: HeaderFacts, headerOnly = false): NiftiVolume {
  const { h, dims, voxels, dt, offset } = f;
  if (!headerOnly && offset + voxels * dt.bytes > bytes.length) {
    fail('bad_input', `the data (${bytes.length - Math.max(0, offset)} bytes from vox_offset ${h.vox_offset}) is shorter than dims ${dims.join('x')} of ${dt.name} need (${voxels * dt.bytes})`, 'vox_offset');
  }
  const px = h.pixDims;
  return {
    dims,
    spacing: [Math.abs(px[1]) || 1, Math.abs(px[2]) || 1, Math.abs(px[3]) || 1],
    affine: h.affine,
    littleEndian: h.littleEndian,
    header: bytes.slice(0, 348),
    data: headerOnly ? new DataView(new ArrayBuffer(0)) : new DataView(bytes.buffer, bytes.byteOffset + offset, voxels * dt.bytes),
    firstVoxel: 0,
    datatype: h.datatypeCode,
    slope: h.scl_slope && Number.isFinite(h.scl_slope) ? h.scl_slope : 1,
    inter: Number.isFinite(h.scl_inter) ? h.scl_inter : 0,
  };
}

/**
 * A little-endian NIfTI-1 header for a volume of these dims and voxel sizes whose voxel (i, j, k)
 * lies at affine x (i, j, k, 1) in RAS mm (sform, scanner), for masks of a volume that did not come
 * from a NIfTI file (a DICOM series).
 */
export function niftiGeometryHeader(dims: [number, number, number], spacing: [number, number, number], affine: number[][]): Uint8Array {
  const h = Buffer.alloc(348);
  h.writeInt32LE(348, 0);
  h.writeInt16LE(3, 40);
  dims.forEach((d, i) => h.writeInt16LE(d, 42 + 2 * i));
  for (let k = 4; k < 8; k++) h.writeInt16LE(1, 40 + 2 * k);
  h.writeInt16LE(2, 70); // uint8
  h.writeInt16LE(8, 72);
  h.writeFloatLE(1, 76); // qfac
  spacing.forEach((s, i) => h.writeFloatLE(s, 80 + 4 * i));
  h.writeFloatLE(352, 108);
  h.writeFloatLE(1, 112);
  h.writeUInt8(2 | 8, 123); // mm, s
  h.writeInt16LE(0, 252); // qform_code: none
  h.writeInt16LE(1, 254); // sform_code: scanner
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) h.writeFloatLE(affine[r][c], 280 + r * 16 + c * 4);
  h.write('n+1\0', 344, 'latin1');
  return h;
}

/** The scaled value of voxel i (storage order); non-finite stored values read as 0. */
export function voxelValue(v: NiftiVolume, voxel: number): number {
  const dv = v.data, le = v.littleEndian;
  const i = voxel - v.firstVoxel;
  let x: number;
  switch (v.datatype) {
    case 2: x = dv.getUint8(i); break;
    case 4: x = dv.getInt16(i * 2, le); break;
    case 8: x = dv.getInt32(i * 4, le); break;
    case 16: x = dv.getFloat32(i * 4, le); break;
    case 64: x = dv.getFloat64(i * 8, le); break;
    case 256: x = dv.getInt8(i); break;
    case 512: x = dv.getUint16(i * 2, le); break;
    default: x = dv.getUint32(i * 4, le);
  }
  return Number.isFinite(x) ? x * v.slope + v.inter : 0;
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
  const { width, height } = forEachSlicePixel(v, axis, k, (p, q) => (vals[p] = voxelValue(v, q)));
  const data = renderWindow(vals, window ?? percentileWindow(vals));
  return { width, height, data, format: 'nifti', spacing: { row: v.spacing[b], col: v.spacing[a] }, sliceValues: vals };
}

/** The masks of the slices first..last along an axis, slice after slice in sliceImage's pixel order. */
export interface SlabMask {
  axis: SliceAxis;
  first: number;
  last: number;
  width: number;
  height: number;
  data: Uint8Array;
}

/** An empty slab for slices first..last: memory for those slices only, not the whole volume. */
export function slabMask(v: Pick<NiftiVolume, 'dims'>, axis: SliceAxis, first: number, last: number): SlabMask {
  const [a, b] = PLANE[axis];
  const width = v.dims[a], height = v.dims[b];
  return { axis, first, last, width, height, data: new Uint8Array((last - first + 1) * width * height) };
}

/** Writes slice k's mask (rows x cols as from sliceImage) into the slab. */
export function placeSliceMask(slab: SlabMask, k: number, mask: Uint8Array): void {
  const off = (k - slab.first) * slab.width * slab.height;
  for (let p = 0; p < slab.width * slab.height; p++) slab.data[off + p] = mask[p] ? 1 : 0;
}

/**
 * A uint8 NIfTI-1 (.nii.gz) with the input's header (dims, pixdim, qform, sform) and the slab's
 * masks in their voxels (zero elsewhere). Written one k-plane at a time through an asynchronous
 * gzip stream, so neither the full mask volume nor the compression blocks the event loop.
 */
export async function writeNiftiMask(v: Pick<NiftiVolume, 'dims' | 'header' | 'littleEndian'>, slab: SlabMask, description: string): Promise<Buffer> {
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
  const [nx, ny, nz] = v.dims;
  const [a, b] = PLANE[slab.axis];
  const z = createGzip();
  const out: Buffer[] = [];
  z.on('data', (c: Buffer) => out.push(c));
  const finished = new Promise<void>((resolve, reject) => {
    z.on('end', resolve);
    z.on('error', reject);
  });
  const write = (buf: Buffer) => (z.write(buf) ? Promise.resolve() : new Promise<void>((r) => z.once('drain', () => r())));
  await write(Buffer.concat([hdr, Buffer.alloc(4)]));
  const ijk = [0, 0, 0];
  const zeros = Buffer.alloc(nx * ny);
  for (let k = 0; k < nz; k++) {
    await nextTurn(); // a plane per turn of the event loop
    // along k, a plane outside the slab is all zeros: no voxel needs visiting
    if (slab.axis === 2 && (k < slab.first || k > slab.last)) {
      await write(zeros);
      continue;
    }
    const plane = Buffer.alloc(nx * ny);
    ijk[2] = k;
    for (let j = 0; j < ny; j++) {
      ijk[1] = j;
      for (let i = 0; i < nx; i++) {
        ijk[0] = i;
        const s = ijk[slab.axis];
        if (s < slab.first || s > slab.last) continue;
        const p = (slab.height - 1 - ijk[b]) * slab.width + ijk[a];
        plane[i + nx * j] = slab.data[(s - slab.first) * slab.width * slab.height + p];
      }
    }
    await write(plane);
  }
  z.end();
  await finished;
  return Buffer.concat(out);
}
