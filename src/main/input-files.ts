import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isNifti } from '../service/segment-file.js';

/** A mistake in the command line: exit 2 with the message. */
export class UsageError extends Error {}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.dcm', '.nii', '.gz']);

/**
 * The image files named on a command line: files as they are, the images of a folder (sorted),
 * and with `lists`, the lines of a .txt file (one path per line, relative to the file; # comments).
 */
export async function expandInputs(args: string[], o: { lists?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    let st;
    try {
      st = await stat(a);
    } catch {
      throw new UsageError(`no such file or folder: ${a}`);
    }
    if (st.isDirectory()) {
      const names = (await readdir(a)).filter((n) => IMAGE_EXT.has(path.extname(n).toLowerCase()) && (!n.toLowerCase().endsWith('.gz') || isNifti(n))).sort();
      out.push(...names.map((n) => path.join(a, n)));
    } else if (o.lists && path.extname(a).toLowerCase() === '.txt') {
      const lines = (await readFile(a, 'utf8')).split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
      out.push(...lines.map((l) => path.resolve(path.dirname(a), l)));
    } else out.push(a);
  }
  return out;
}
