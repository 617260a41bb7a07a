import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { fail } from '../core/errors.js';
import { decodeImage } from '../core/image/decode.js';
import type { LabelledImage } from '../core/adapters/support.js';

/**
 * A folder of labelled images in the layout of ../shared/data/medseg2d: `dataset.json`,
 * `images/<case>.<ext>`, `masks/<slug>/<case>.png`, and optionally `splits.json` ({train, val, test}:
 * case ids). What adaptation reads; every problem is reported naming the file.
 */
export interface LabelledFolder {
  root: string;
  /** dataset.json's id and name, and the names it gives the structure. */
  id: string;
  name: string;
  modality: string | undefined;
  structure: { slug: string; name: string; synonyms: string[] };
  /** Case ids by split; without splits.json every case is in `train`. */
  splits: Record<string, string[]>;
  hasSplits: boolean;
  /** sha256 over dataset.json, splits.json and every image and mask file of the structure (names and bytes). */
  sha256: string;
}

const IMAGE_EXTS = ['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp', '.dcm'];

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return fail('bad_input', `${file} is not valid JSON (${(e as Error).message})`, 'folder');
  }
}

/** Reads the folder's description and lists its cases; reads no pixels yet. */
export function openLabelledFolder(root: string, slug: string): LabelledFolder {
  if (!existsSync(root) || !statSync(root).isDirectory()) fail('bad_input', `${root} is not a folder`, 'folder');
  const metaFile = path.join(root, 'dataset.json');
  if (!existsSync(metaFile)) fail('bad_input', `${root} has no dataset.json (the layout is dataset.json, images/, masks/<structure>/, optional splits.json)`, 'folder');
  const meta = readJson(metaFile) as { id?: string; name?: string; modality?: string; structures?: { slug: string; name?: string; synonyms?: string[] }[] };
  const declared = meta.structures?.find((s) => s.slug === slug);
  const maskDir = path.join(root, 'masks', slug);
  if (!existsSync(maskDir)) {
    const have = existsSync(path.join(root, 'masks')) ? readdirSync(path.join(root, 'masks')).join(', ') : 'none';
    fail('bad_input', `${root} has no masks/${slug}/ folder (structures with masks: ${have || 'none'})`, 'structure');
  }
  const imageDir = path.join(root, 'images');
  if (!existsSync(imageDir)) fail('bad_input', `${root} has no images/ folder`, 'folder');
  const files = readdirSync(imageDir).filter((f) => !f.startsWith('.')).sort();
  const cases = new Map<string, string>();
  for (const f of files) {
    const ext = path.extname(f).toLowerCase();
    if (!IMAGE_EXTS.includes(ext)) fail('unsupported_format', `images/${f} is not an image file this reader takes (${IMAGE_EXTS.join(', ')})`, 'folder');
    cases.set(f.slice(0, -ext.length), f);
  }
  if (!cases.size) fail('bad_input', `${imageDir} holds no images`, 'folder');
  const splitsFile = path.join(root, 'splits.json');
  const hasSplits = existsSync(splitsFile);
  const splits: Record<string, string[]> = { train: [...cases.keys()] };
  if (hasSplits) {
    // train, val and test are read; other keys (counts, the rule that made the split) are notes
    const j = readJson(splitsFile) as Record<string, unknown>;
    if (!Array.isArray(j.train)) fail('bad_input', 'splits.json has no "train" list of case ids', 'folder');
    for (const name of ['train', 'val', 'test']) if (j[name] !== undefined) splits[name] = j[name] as string[];
  }
  for (const [name, ids] of Object.entries(splits)) {
    if (!Array.isArray(ids) || ids.some((c) => typeof c !== 'string')) fail('bad_input', `splits.json: "${name}" is not a list of case ids`, 'folder');
    for (const c of ids) if (!cases.has(c)) fail('bad_input', `splits.json lists case "${c}" in ${name}, but images/ has no such image`, 'folder');
  }
  const h = createHash('sha256');
  h.update(readFileSync(metaFile));
  if (hasSplits) h.update(readFileSync(splitsFile));
  for (const [c, f] of cases) {
    h.update(f).update(readFileSync(path.join(imageDir, f)));
    const m = path.join(maskDir, `${c}.png`);
    if (existsSync(m)) h.update(`${c}.png`).update(readFileSync(m));
  }
  return {
    root,
    id: meta.id ?? path.basename(root),
    name: meta.name ?? meta.id ?? path.basename(root),
    modality: meta.modality,
    structure: { slug, name: declared?.name ?? slug.replace(/_/g, ' '), synonyms: declared?.synonyms ?? [] },
    splits,
    hasSplits,
    sha256: h.digest('hex'),
  };
}

/** The image file of a case. */
export function caseFile(folder: LabelledFolder, c: string): string {
  const f = readdirSync(path.join(folder.root, 'images')).find((x) => x.slice(0, x.length - path.extname(x).length) === c);
  if (!f) return fail('bad_input', `images/ has no image for case "${c}"`, 'folder');
  return path.join(folder.root, 'images', f);
}

/** One case decoded, with its mask checked against the image's size. */
export async function readLabelledCase(folder: LabelledFolder, c: string, maxPixels: number): Promise<LabelledImage> {
  const file = caseFile(folder, c);
  const rel = path.relative(folder.root, file);
  let image;
  try {
    image = await decodeImage(readFileSync(file), { maxPixels });
  } catch (e) {
    return fail('bad_input', `${rel}: ${(e as Error).message}`, 'folder');
  }
  const maskFile = path.join(folder.root, 'masks', folder.structure.slug, `${c}.png`);
  const maskRel = path.relative(folder.root, maskFile);
  if (!existsSync(maskFile)) fail('bad_input', `${maskRel} is missing (every image needs a mask; an empty one where the structure is absent)`, 'folder');
  let raw;
  try {
    raw = await sharp(readFileSync(maskFile)).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    return fail('bad_input', `${maskRel} is not a readable PNG mask (${(e as Error).message})`, 'folder');
  }
  if (raw.info.width !== image.width || raw.info.height !== image.height) {
    fail('bad_input', `${maskRel} is ${raw.info.width}x${raw.info.height}, but its image ${rel} is ${image.width}x${image.height}`, 'folder');
  }
  return { name: rel, image, mask: Uint8Array.from(raw.data, (v) => (v > 127 ? 1 : 0)) };
}

/** `k` case ids drawn from a list by a seeded shuffle (all of them when k is undefined or larger). */
export function drawCases(ids: string[], k: number | undefined, rnd: () => number): string[] {
  const a = [...ids];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return k === undefined ? a.sort() : a.slice(0, k).sort();
}
