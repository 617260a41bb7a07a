import { opendir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../core/errors.js';
import { renderWindow } from '../core/image/dicom.js';
import { readDicomSeries } from '../core/image/dicom-series.js';
import { isZip, readZipFiles } from '../core/image/zip-files.js';
import { sniffFormat } from '../core/image/decode.js';
import { niftiGeometryHeader, placeSliceMask, readNifti, slabMask, sliceImage, writeNiftiMask, type SlabMask, type SliceAxis } from '../core/image/nifti.js';
import type { RasterImage } from '../core/image/raster.js';
import type { SegSeries } from '../core/image/dicom-seg.js';
import type { ServiceContext } from './context.js';
import { readAllowedFile, readImageBytes, realPathInRoots } from './resolve-image.js';
import { fetchSeries } from './dicomweb.js';

/** What segment_volume needs of a volume, whatever it came as (a NIfTI file, a DICOM series). */
export interface VolumeSource {
  kind: 'nifti' | 'dicom-series';
  dims: [number, number, number];
  spacing: [number, number, number];
  /** Slice k along axis as an image; `window` (centre, width in voxel units) overrides the default rendering. */
  slice(axis: SliceAxis, k: number, window?: [number, number]): RasterImage;
  /** Puts slice k's mask (in the slice image's pixel order) into the slab. */
  place(slab: SlabMask, k: number, mask: Uint8Array): void;
  slab(axis: SliceAxis, first: number, last: number): SlabMask;
  /** A NIfTI mask (.nii.gz) of the slab with the volume's geometry. */
  write(slab: SlabMask, description: string): Promise<Buffer>;
  /** For a DICOM series: its geometry for a SEG, and a slab's masks per instance (all slices, rows as stored). */
  series?: { seg: SegSeries; slices(slab: SlabMask): Uint8Array[] };
}

/**
 * Opens what a segment_volume caller sent: a NIfTI file (base64, path or upload), or a DICOM series as
 * a folder inside the allowed roots (one file per slice) or a zip archive of one (base64, path or upload). `keep` names the voxels a NIfTI read
 * needs to keep (the slices asked for).
 */
export async function openVolume(ctx: ServiceContext, image: { base64?: string; path?: string; dicomweb?: { study_uid: string; series_uid: string } }, keep?: (dims: [number, number, number]) => [number, number], upload?: Uint8Array, uploads?: { name: string; bytes: Uint8Array }[]): Promise<VolumeSource> {
  // the files of a series uploaded together (multipart)
  if (uploads && uploads.length > 1 && image.base64 === undefined && image.path === undefined) {
    if (uploads.length > MAX_SERIES_FILES) fail('too_large', `${uploads.length} files uploaded; a series takes at most ${MAX_SERIES_FILES}`, 'image');
    return seriesSource(ctx, uploads);
  }
  // a series in the PACS (DICOMweb WADO-RS)
  if (image.dicomweb) return seriesSource(ctx, await fetchSeries(ctx.config, image.dicomweb.study_uid, image.dicomweb.series_uid, ctx.config.PROMPTSEG_MAX_VOLUME_BYTES));
  const folder = image.path !== undefined && image.base64 === undefined ? await allowedFolder(ctx, image.path) : undefined;
  if (folder) return seriesSource(ctx, await folderFiles(ctx, folder));
  // an uploaded file (multipart) when the input names none
  const bytes = upload && image.base64 === undefined && image.path === undefined ? upload : await readImageBytes(ctx, image);
  // a zip archive of a series (base64, or a .zip file by path)
  if (isZip(bytes)) return seriesSource(ctx, await readZipFiles(bytes, { maxFiles: MAX_SERIES_FILES, maxBytes: ctx.config.PROMPTSEG_MAX_VOLUME_BYTES }));
  const format = sniffFormat(bytes);
  if (format !== 'nifti' && format !== 'gzip' && format !== 'unknown') {
    const what = format === 'dicom' ? 'a single DICOM file (a series is read from its folder: image.path)' : `a ${format.toUpperCase()} image`;
    fail('unsupported_format', `segment_volume reads NIfTI-1 volumes (.nii, .nii.gz) and DICOM series (a folder); this is ${what}: use the segment operation (POST /v1/segment, MCP segment_image) for 2D images`, 'image');
  }
  const vol = await readNifti(bytes, { maxVoxels: ctx.config.PROMPTSEG_MAX_VOLUME_VOXELS, maxBytes: ctx.config.PROMPTSEG_MAX_VOLUME_BYTES }, keep);
  return {
    kind: 'nifti',
    dims: vol.dims,
    spacing: vol.spacing,
    slice: (axis, k, window) => {
      const { sliceValues: _v, ...img } = sliceImage(vol, axis, k, window);
      return img;
    },
    place: (slab, k, mask) => placeSliceMask(slab, k, mask),
    slab: (axis, first, last) => slabMask(vol, axis, first, last),
    write: (slab, description) => writeNiftiMask(vol, slab, description),
  };
}

/** The real path of a folder inside the allowed roots, or undefined when the path is not a folder there. */
async function allowedFolder(ctx: ServiceContext, p: string): Promise<string | undefined> {
  const roots = ctx.config.PROMPTSEG_ALLOWED_ROOTS;
  if (!roots.length) return undefined; // readImageBytes gives the reason
  let real: string;
  try {
    real = await realpath(path.resolve(p));
  } catch {
    return undefined;
  }
  if (!(await realPathInRoots(real, roots))) return undefined;
  const dir = await opendir(real).catch(() => undefined);
  if (!dir) return undefined;
  await dir.close();
  return real;
}

/** At most this many files in a series (a folder or an archive). */
const MAX_SERIES_FILES = 2048;

/** The files of a folder inside the roots, each read with the checks of any path (inside the roots, a regular file, within the size limit). */
async function folderFiles(ctx: ServiceContext, folder: string): Promise<{ name: string; bytes: Uint8Array }[]> {
  const names: string[] = [];
  for await (const e of await opendir(folder)) {
    if (e.isFile() && !e.name.startsWith('.')) names.push(e.name);
    if (names.length > MAX_SERIES_FILES) fail('too_large', `the folder holds more than ${MAX_SERIES_FILES} files`, 'image.path');
  }
  names.sort();
  const files = [];
  for (const name of names) files.push({ name, bytes: await readAllowedFile(ctx, path.join(folder, name)) });
  return files;
}

async function seriesSource(ctx: ServiceContext, files: { name: string; bytes: Uint8Array }[]): Promise<VolumeSource> {
  const s = await readDicomSeries(files, { maxVoxels: ctx.config.PROMPTSEG_MAX_VOLUME_VOXELS, maxSlices: MAX_SERIES_FILES });
  const header = niftiGeometryHeader(s.dims, s.spacing, s.affine);
  const geometry = { dims: s.dims, header, littleEndian: true };
  const along = (axis: SliceAxis) => {
    if (axis !== 2) fail('invalid_argument', 'a DICOM series is segmented along its slices (axis 2)', 'axis');
  };
  return {
    kind: 'dicom-series',
    dims: s.dims,
    spacing: s.spacing,
    slice: (axis, k, window) => {
      along(axis);
      const img = s.slices[k];
      // the pipeline windows CT per structure from the modality values; a caller's window is drawn here
      return window && img.dicom.values ? { ...img, data: renderWindow(img.dicom.values, window, img.dicom.monochrome1), dicom: { ...img.dicom, window, windowSource: 'request' } } : img;
    },
    // a DICOM slice's row r is voxel row j = r; the slab counts rows from the top of a RAS view, so rows are flipped in
    place: (slab, k, mask) => {
      const w = slab.width, h = slab.height, flipped = new Uint8Array(w * h);
      for (let r = 0; r < h; r++) flipped.set(mask.subarray(r * w, (r + 1) * w), (h - 1 - r) * w);
      placeSliceMask(slab, k, flipped);
    },
    slab: (axis, first, last) => {
      along(axis);
      return slabMask(geometry, axis, first, last);
    },
    write: (slab, description) => writeNiftiMask(geometry, slab, description),
    series: {
      seg: {
        source: { ...s.slices[0].dicom, rows: s.dims[1], columns: s.dims[0], spacing: { row: s.spacing[1], col: s.spacing[0] } },
        orientation: s.iop,
        sliceSpacing: s.spacing[2],
        instances: s.instances.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopInstanceUid, position: i.ipp })),
      },
      // the slab's rows back in stored order; slices outside it are empty
      slices: (slab) =>
        Array.from({ length: s.dims[2] }, (_, k) => {
          const w = slab.width, h = slab.height, out = new Uint8Array(w * h);
          if (k < slab.first || k > slab.last) return out;
          const off = (k - slab.first) * w * h;
          for (let r = 0; r < h; r++) out.set(slab.data.subarray(off + (h - 1 - r) * w, off + (h - r) * w), r * w);
          return out;
        }),
    },
  };
}
