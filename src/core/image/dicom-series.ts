import dicomParser from 'dicom-parser';
import { fail } from '../errors.js';
import { decodeDicom, type DicomRaster } from './dicom.js';

/** One file of a series, by the name it came under (for messages). */
export interface SeriesFile {
  name: string;
  bytes: Uint8Array;
}

/** A DICOM series read as a volume: its slices in order along the slice normal, and its geometry. */
export interface DicomSeries {
  /** [columns, rows, slices]: voxel (i, j, k) is column i, row j of the k-th slice along the normal. */
  dims: [number, number, number];
  /** mm between columns, between rows, between slices. */
  spacing: [number, number, number];
  /** Voxel (i, j, k) -> RAS mm, as a NIfTI sform (4 rows). */
  affine: number[][];
  /** The slices, decoded with their modality values (HU for CT), in order. */
  slices: DicomRaster[];
  /** Each slice's instance, its ImagePositionPatient and position along the normal, in the same order. */
  instances: { sopInstanceUid: string; sopClassUid: string; position: number; ipp: number[]; name: string }[];
  seriesInstanceUid: string;
  /** ImageOrientationPatient shared by every slice. */
  iop: number[];
}

interface Header {
  name: string;
  series: string;
  sop: string;
  sopClass: string;
  rows: number;
  cols: number;
  frames: number;
  spacing: [number, number];
  iop: number[];
  ipp: number[];
}

const nums = (s: string | undefined, n: number): number[] | undefined => {
  const v = (s ?? '').split('\\').map(Number);
  return v.length === n && v.every(Number.isFinite) ? v : undefined;
};

function header(f: SeriesFile): Header {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(f.bytes, { untilTag: 'x7fe00010' });
  } catch {
    return fail('bad_input', `${f.name} is not a readable DICOM file`, 'image');
  }
  const iop = nums(ds.string('x00200037'), 6), ipp = nums(ds.string('x00200032'), 3), ps = nums(ds.string('x00280030'), 2);
  if (!iop || !ipp) fail('invalid_argument', `${f.name} has no ImageOrientationPatient / ImagePositionPatient: a series needs both on every slice to be stacked`, 'image');
  if (!ps || !(ps[0] > 0 && ps[1] > 0)) fail('invalid_argument', `${f.name} has no valid PixelSpacing`, 'image');
  return {
    name: f.name,
    series: ds.string('x0020000e') ?? '',
    sop: ds.string('x00080018') ?? '',
    sopClass: ds.string('x00080016') ?? '',
    rows: ds.uint16('x00280010') ?? 0,
    cols: ds.uint16('x00280011') ?? 0,
    frames: Number(ds.string('x00280008') ?? 1) || 1,
    spacing: [ps![0], ps![1]],
    iop: iop!,
    ipp: ipp!,
  };
}

const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: number[], b: number[]) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

/**
 * Reads a DICOM series (one file per slice) as a volume. Slices are ordered by their position
 * along the slice normal (ImagePositionPatient projected on the cross product of the orientation
 * vectors), never by file name or instance number. Refused with the reason named: files of more
 * than one series, multi-frame files, differing size, spacing or orientation, two slices at one
 * position, and a gap where a slice is missing.
 */
export async function readDicomSeries(files: SeriesFile[], limits: { maxVoxels: number; maxSlices: number }): Promise<DicomSeries> {
  const dicoms = files.filter((f) => !/(^|\/)DICOMDIR$/i.test(f.name));
  if (dicoms.length < 2) fail('invalid_argument', `a series needs at least 2 DICOM files; ${dicoms.length} found`, 'image');
  if (dicoms.length > limits.maxSlices) fail('too_large', `the series has ${dicoms.length} files, over the limit of ${limits.maxSlices} slices`, 'image');
  const hs = dicoms.map(header);
  const seriesUids = [...new Set(hs.map((h) => h.series))];
  if (seriesUids.length > 1) fail('invalid_argument', `the files belong to ${seriesUids.length} series (SeriesInstanceUID differs, e.g. ${hs[0].name} and ${hs.find((h) => h.series !== hs[0].series)!.name}); send one series`, 'image');
  const first = hs[0];
  for (const h of hs) {
    if (h.frames > 1) fail('unsupported_format', `${h.name} is a multi-frame file (${h.frames} frames); a series is read as one file per slice`, 'image');
    if (h.rows !== first.rows || h.cols !== first.cols) fail('invalid_argument', `${h.name} is ${h.cols}x${h.rows} but ${first.name} is ${first.cols}x${first.rows}: the slices of a series have one size`, 'image');
    if (Math.abs(h.spacing[0] - first.spacing[0]) > 1e-3 || Math.abs(h.spacing[1] - first.spacing[1]) > 1e-3) fail('invalid_argument', `${h.name} has PixelSpacing ${h.spacing.join('\\')} but ${first.name} has ${first.spacing.join('\\')}`, 'image');
    if (h.iop.some((v, i) => Math.abs(v - first.iop[i]) > 1e-3)) fail('invalid_argument', `${h.name} has another orientation (ImageOrientationPatient) than ${first.name}: the series is not one stack`, 'image');
  }
  if (first.cols * first.rows * hs.length > limits.maxVoxels) fail('too_large', `the series is ${first.cols}x${first.rows}x${hs.length} voxels, over the limit of ${limits.maxVoxels}`, 'image');
  const rowDir = first.iop.slice(0, 3), colDir = first.iop.slice(3, 6);
  const normal = cross(rowDir, colDir);
  const order = hs.map((h, i) => ({ i, pos: dot(h.ipp, normal) })).sort((a, b) => a.pos - b.pos);
  const gaps = order.slice(1).map((o, k) => o.pos - order[k].pos);
  const dup = gaps.findIndex((g) => g < 1e-3);
  if (dup >= 0) fail('invalid_argument', `${hs[order[dup].i].name} and ${hs[order[dup + 1].i].name} lie at the same position (${order[dup].pos.toFixed(3)} mm along the normal)`, 'image');
  const step = [...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)];
  const gap = gaps.findIndex((g) => Math.abs(g - step) > 0.1 * step);
  if (gap >= 0) fail('invalid_argument', `the slices are not evenly spaced: ${gaps[gap].toFixed(2)} mm between ${hs[order[gap].i].name} and ${hs[order[gap + 1].i].name} where the others are ${step.toFixed(2)} mm apart (a missing slice?)`, 'image');
  const slices: DicomRaster[] = [];
  for (const o of order) slices.push(await decodeDicom(dicoms[o.i].bytes, { maxPixels: first.rows * first.cols }));
  const [rowSp, colSp] = first.spacing; // PixelSpacing: between rows, then between columns
  const origin = hs[order[0].i].ipp;
  const sliceVec = normal.map((v) => v * step);
  // LPS (DICOM) to RAS (NIfTI): x and y change sign
  const lps = [0, 1, 2].map((a) => [rowDir[a] * colSp, colDir[a] * rowSp, sliceVec[a], origin[a]]);
  const affine = [lps[0].map((v) => -v), lps[1].map((v) => -v), lps[2], [0, 0, 0, 1]];
  return {
    dims: [first.cols, first.rows, hs.length],
    spacing: [colSp, rowSp, step],
    affine,
    slices,
    instances: order.map((o) => ({ sopInstanceUid: hs[o.i].sop, sopClassUid: hs[o.i].sopClass, position: o.pos, ipp: hs[o.i].ipp, name: hs[o.i].name })),
    seriesInstanceUid: first.series,
    iop: first.iop,
  };
}
