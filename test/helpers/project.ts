import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MODELS_DIR = path.join(ROOT, 'models');
export const SHARED_DATA = path.resolve(ROOT, '..', 'shared', 'data', 'medseg2d');

/** Why tests that read ../shared cannot run here, or undefined when they can. */
export const sharedMissing: string | undefined = existsSync(path.join(SHARED_DATA, 'index.json'))
  ? undefined
  : `../shared/data/medseg2d is absent (${SHARED_DATA}); these tests read real cases from it`;

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** The tiny test bundles' manifest (models/tiny), added with PROMPTSEG_EXTRA_MANIFESTS. */
export const TINY_MANIFEST = path.join(MODELS_DIR, 'tiny', 'manifest.json');
