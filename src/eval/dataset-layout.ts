import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

/**
 * Reading the medseg2d layout (eval/README.md): one place that knows where a case's image and its
 * ground-truth masks live, for evaluation, calibration and the report gallery.
 */

/** What a dataset's dataset.json says that evaluation and calibration read. */
export interface DatasetMeta {
  id: string;
  modality: string;
  structures: { slug: string; name: string }[];
  image_ext?: string[];
}

/** The dataset ids of a data root's index.json, in its order. */
export function readDatasetIds(dataRoot: string): string[] {
  return (JSON.parse(readFileSync(path.join(dataRoot, 'index.json'), 'utf8')) as { id: string }[]).map((d) => d.id);
}

export function readDatasetMeta(dataRoot: string, id: string): DatasetMeta {
  return JSON.parse(readFileSync(path.join(dataRoot, id, 'dataset.json'), 'utf8')) as DatasetMeta;
}

/** Case ids by split name (splits.json). */
export function readSplits(dataRoot: string, id: string): Record<string, string[]> {
  return JSON.parse(readFileSync(path.join(dataRoot, id, 'splits.json'), 'utf8')) as Record<string, string[]>;
}

/** The image file of a case: the first of the dataset's extensions that exists, else any `<case>.*`. */
export function caseImagePath(dataRoot: string, dataset: string, c: string, exts: string[] = ['.png', '.jpg']): string {
  const dir = path.join(dataRoot, dataset, 'images');
  const ext = exts.find((e) => existsSync(path.join(dir, c + e)));
  if (ext) return path.join(dir, c + ext);
  const any = readdirSync(dir).find((f) => f.startsWith(c + '.'));
  if (!any) throw new Error(`no image for case ${c} in ${dir}`);
  return path.join(dir, any);
}

/** A structure's ground-truth mask of a case as 0/1 bytes; checks it matches the image size when given. */
export async function readCaseMask(dataRoot: string, dataset: string, slug: string, c: string, size?: { width: number; height: number }): Promise<Uint8Array> {
  const file = path.join(dataRoot, dataset, 'masks', slug, c + '.png');
  const { data, info } = await sharp(file).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  if (size && (info.width !== size.width || info.height !== size.height)) throw new Error(`${file} is ${info.width}x${info.height}, the image is ${size.width}x${size.height}`);
  return Uint8Array.from(data, (v) => (v > 127 ? 1 : 0));
}

/**
 * At most `limit` cases spread evenly over the split (cases are sorted by subject, so the first N
 * would come from a few subjects only).
 */
export function spread<T>(cases: T[], limit: number): T[] {
  if (cases.length <= limit) return [...cases];
  return Array.from({ length: limit }, (_, i) => cases[Math.floor((i * cases.length) / limit)]);
}
