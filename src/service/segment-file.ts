import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AppError } from '../core/errors.js';
import type { ServiceContext } from './context.js';
import { operationByName } from './operation-table.js';
import { getResultArtifact, getVolumeDicomSeg, getVolumeMask } from './result-artifacts.js';
import { runOperation } from './run-operation.js';

/** What `promptseg segment` and the batch workers ask of one input file. */
export interface FileRequest {
  prompts: string[];
  model?: string;
  threshold?: number;
  genericWords?: string;
  /** For a series from the PACS: store its DICOM SEG back there too (STOW-RS). */
  storeSeg?: boolean;
}

/** A series in the PACS as a batch input: `dicomweb:<study uid>/<series uid>`. */
export const seriesInput = (study: string, series: string) => `dicomweb:${study}/${series}`;
const parseSeriesInput = (input: string) => /^dicomweb:([0-9.]{1,64})\/([0-9.]{1,64})$/.exec(input);

/** One segmented file: its mask files (name and bytes) and its summary entry, or the error naming what was wrong. */
export type FileOutcome = { ok: true; masks: { name: string; bytes: Uint8Array }[]; summary: Record<string, unknown> } | { ok: false; error: AppError };

export const isNifti = (f: string) => /\.nii(\.gz)?$/i.test(f);

/** The name an input's outputs start with: its file name without the extension (.nii.gz as one), or a PACS series' UID. */
export const baseName = (f: string) => parseSeriesInput(f)?.[2] ?? (isNifti(f) ? path.basename(f).replace(/\.nii(\.gz)?$/i, '') : path.basename(f, path.extname(f)));

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '').slice(0, 60) || 'prompt';

/**
 * Segments one input through the operation table: a 2D image gives PNG masks, a NIfTI volume
 * NIfTI masks, a series from the PACS (seriesInput) NIfTI masks and its DICOM SEG; named `<base>__<prompt>`.
 */
export async function segmentFile(ctx: ServiceContext, file: string, req: FileRequest): Promise<FileOutcome> {
  const series = parseSeriesInput(file);
  let image: Record<string, unknown>;
  if (series) image = { dicomweb: { study_uid: series[1], series_uid: series[2] } };
  else {
    try {
      image = { base64: (await readFile(file)).toString('base64') };
    } catch (e) {
      return { ok: false, error: { kind: 'bad_input', message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` } };
    }
  }
  // volumes go slice by slice and come back as NIfTI masks with the input's affine; 2D images as PNG masks
  const volume = !!series || isNifti(file);
  const input: Record<string, unknown> = { image, prompts: req.prompts };
  if (req.model) input.model = req.model;
  if (req.threshold !== undefined) input.threshold = req.threshold;
  if (req.genericWords && !volume) input.generic_words = req.genericWords;
  if (series && req.storeSeg) input.store_seg = true;
  const r = await runOperation(ctx, operationByName(volume ? 'segment_volume' : 'segment')!, input, { via: 'cli' });
  if (!r.ok) return { ok: false, error: r.error };
  const v = r.value as { result_id?: string; volume_id?: string; dicom_seg_url?: string; results: { index: number; prompt: string }[] };
  const masks: { name: string; bytes: Uint8Array }[] = [];
  for (const res of v.results) {
    const art = volume ? await getVolumeMask(ctx, v.volume_id!, res.index) : await getResultArtifact(ctx, v.result_id!, 'masks', res.index);
    if (!art.ok) continue;
    masks.push({ name: `${baseName(file)}__${slug(res.prompt)}${volume ? '.nii.gz' : '.png'}`, bytes: art.value.bytes });
  }
  if (series && v.dicom_seg_url) {
    const seg = await getVolumeDicomSeg(ctx, v.volume_id!, false);
    if (seg.ok) masks.push({ name: `${baseName(file)}__seg.dcm`, bytes: seg.value.bytes });
  }
  const summary = JSON.parse(JSON.stringify(v, (k, val) => (k === 'mask_url' || k === 'mask_uri' ? undefined : val))) as Record<string, unknown>;
  return { ok: true, masks, summary: { file, ...summary, mask_files: masks.map((m) => m.name) } };
}
