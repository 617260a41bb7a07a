import { constants as fsConstants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { AppFailure, fail } from '../core/errors.js';
import { decodeImage } from '../core/image/decode.js';
import { workingImage } from '../core/image/working-resolution.js';
import type { RasterImage } from '../core/image/raster.js';
import type { ServiceContext } from './context.js';
import { imageIdFor } from './principal.js';

export const ImageInputSchema = z
  .object({
    base64: z.string().optional().describe('The image file (PNG, JPEG, WebP or TIFF) encoded as base64; a data: URL prefix is accepted.'),
    path: z.string().optional().describe('A file path on the server, only inside the configured allowed roots (PROMPTSEG_ALLOWED_ROOTS).'),
    image_id: z.string().regex(/^[0-9a-f]{64}$/, 'image_id is the 64-hex-digit id returned by an earlier call').optional().describe('The image_id returned by an earlier segment call (by the same caller: ids are scoped to the bearer token), to prompt the same image again without resending it.'),
  })
  .describe('Exactly one of base64, path or image_id.');
export type ImageInput = z.infer<typeof ImageInputSchema>;

/** Turns the caller's image reference into decoded pixels, enforcing size limits and allowed roots. */
export interface DecodeOptions {
  /** DICOM: frame of a multi-frame file. */
  frame?: number;
  /** DICOM grey images: display window [centre, width] in modality units (e.g. HU). */
  window?: [number, number];
}

export async function resolveImage(ctx: ServiceContext, input: ImageInput, spacing?: [number, number], decode: DecodeOptions = {}, caller: { principal?: string; upload?: Uint8Array } = {}): Promise<{ id: string; image: RasterImage }> {
  const principal = caller.principal ?? 'anonymous';
  const given = (['base64', 'path', 'image_id'] as const).filter((k) => input[k] !== undefined);
  if (caller.upload && !given.length) return remember(ctx, caller.upload, spacing, decode, principal);
  if (given.length !== 1) fail('invalid_argument', `give exactly one of image.base64, image.path or image.image_id (got ${given.length ? given.join(', ') : 'none'})`, 'image');
  if (input.image_id !== undefined) {
    const img = recallImage(ctx, principal, input.image_id) ?? (await recallShared(ctx, principal, input.image_id));
    if (!img) fail('invalid_argument', `image_id ${input.image_id} is not (or no longer) held by this server; send the image again`, 'image.image_id');
    return { id: input.image_id, image: withSpacing(img!, spacing) };
  }
  return remember(ctx, await readImageBytes(ctx, input), spacing, decode, principal);
}

/** Decodes image bytes (bounded concurrency) and keeps the image for its caller's image_id. */
async function remember(ctx: ServiceContext, bytes: Uint8Array, spacing: [number, number] | undefined, decode: DecodeOptions, principal: string): Promise<{ id: string; image: RasterImage }> {
  // a huge image is kept (and worked on) as its working copy: the full decode lives only this long
  const image = await ctx.decodeQueue.run(async () => await workingImage(await decodeImage(bytes, { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS, ...decode }), ctx.config.PROMPTSEG_WORK_MAX_PIXELS), ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS);
  const id = imageIdFor(ctx.idKey, principal, createHash('sha256').update(bytes).digest('hex'), decode.frame !== undefined || decode.window ? JSON.stringify(decode) : '');
  ctx.images.set(imageKey(principal, id), image);
  // with shared state, the bytes (not the decoded pixels: a fraction of their size) for other replicas
  await ctx.shared?.put('image', sharedImageKey(principal, id), { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), decode });
  return { id, image: withSpacing(image, spacing) };
}

/** An image id's key in the shared store: the caller's id hashed with the principal, never the token itself. */
const sharedImageKey = (principal: string, id: string) => createHash('sha256').update(`${principal}\u0000${id}`).digest('hex');

/** An image_id another replica was given: its bytes from the shared store, decoded here as they were there. */
async function recallShared(ctx: ServiceContext, principal: string, id: string): Promise<RasterImage | undefined> {
  if (!ctx.shared) return undefined;
  const held = await ctx.shared.get<{ bytes: Buffer; decode: DecodeOptions }>('image', sharedImageKey(principal, id));
  if (!held) return undefined;
  const { image } = await remember(ctx, held.bytes, undefined, held.decode, principal);
  return image;
}

/** Images are held per caller: an id is found only by the principal it was given to. */
const imageKey = (principal: string, id: string) => `${principal}\u0000${id}`;

/** The decoded image behind a caller's image_id, if still held. */
export function recallImage(ctx: ServiceContext, principal: string | undefined, id: string): RasterImage | undefined {
  return ctx.images.get(imageKey(principal ?? 'anonymous', id));
}

/** The caller's pixel spacing (of the image as sent) on the image or its working copy. */
function withSpacing(image: RasterImage, spacing?: [number, number]): RasterImage {
  if (!spacing) return image;
  const given = { row: spacing[0], col: spacing[1] };
  const o = image.original;
  if (!o) return { ...image, spacing: given };
  return { ...image, spacing: { row: (given.row * o.height) / image.height, col: (given.col * o.width) / image.width }, original: { ...o, spacing: given } };
}

/** The bytes of an image given as base64 (size and alphabet checked first) or as a path inside the allowed roots. */
export async function readImageBytes(ctx: ServiceContext, input: { base64?: string; path?: string }): Promise<Uint8Array> {
  const given = (['base64', 'path'] as const).filter((k) => input[k] !== undefined);
  if (given.length !== 1) fail('invalid_argument', 'give exactly one of image.base64 or image.path', 'image');
  if (input.base64 === undefined) return readAllowedFile(ctx, input.path!);
  const b64 = input.base64.replace(/^data:[^;,]*;base64,/, '');
  const max = ctx.config.PROMPTSEG_MAX_BODY_BYTES;
  if ((b64.length * 3) / 4 > max) fail('too_large', `the base64 image decodes to over ${max} bytes`, 'image.base64');
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(b64)) fail('bad_input', 'image.base64 is not valid base64', 'image.base64');
  return Buffer.from(b64, 'base64');
}

/**
 * Reads a file the caller named by path, only inside the configured allowed roots. The file is
 * opened once (no symlink as the last component, non-blocking so a FIFO cannot hang the open),
 * and everything after is checked on that descriptor: a regular file, within the size limit, and
 * its real path (of the descriptor, not of the name, which could be swapped in between) inside a
 * root. The read is capped at the size seen and bounded in time. Every refusal says the same thing,
 * so that the answer does not tell which paths exist outside the roots, nor what the roots are.
 */
export async function readAllowedFile(ctx: ServiceContext, p: string): Promise<Uint8Array> {
  const roots = ctx.config.PROMPTSEG_ALLOWED_ROOTS;
  if (!roots.length) fail('invalid_argument', 'reading images by path is disabled: the server has no PROMPTSEG_ALLOWED_ROOTS; send base64 instead', 'image.path');
  const refuse = (): never => fail('invalid_argument', `no readable image file at ${p} inside the allowed roots`, 'image.path');
  if (typeof p !== 'string' || !p || p.includes('\0')) return refuse();
  let fh: FileHandle;
  try {
    fh = await open(path.resolve(p), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch {
    return refuse();
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return refuse();
    if (!(await insideRoots(fh, roots, p, st))) return refuse();
    const max = ctx.config.PROMPTSEG_MAX_BODY_BYTES;
    if (st.size > max) fail('too_large', `${p} is ${st.size} bytes, over the limit of ${max}`, 'image.path');
    return await readCapped(fh, st.size, ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS, p);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Whether the opened file lies inside one of the roots: by the descriptor's own path where the system shows it (/proc/self/fd), else by the name's real path naming the very same inode. */
async function insideRoots(fh: FileHandle, roots: string[], p: string, st: { dev: number; ino: number }): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(`/proc/self/fd/${fh.fd}`);
  } catch {
    try {
      real = await realpath(path.resolve(p));
      const again = await stat(real);
      if (again.dev !== st.dev || again.ino !== st.ino) return false;
    } catch {
      return false;
    }
  }
  return realPathInRoots(real, roots);
}

/** Whether a real (symlink-free) path is one of the roots or lies below one. */
export async function realPathInRoots(real: string, roots: string[]): Promise<boolean> {
  for (const r of roots) {
    try {
      const rr = await realpath(r);
      if (real === rr || real.startsWith(rr.endsWith(path.sep) ? rr : rr + path.sep)) return true;
    } catch {
      // a root that does not exist contains nothing
    }
  }
  return false;
}

/** Reads at most `size` bytes (a file that grew is cut at the size that was checked), failing after timeoutMs. */
async function readCapped(fh: FileHandle, size: number, timeoutMs: number, p: string): Promise<Uint8Array> {
  const buf = Buffer.allocUnsafe(size);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AppFailure({ kind: 'deadline_exceeded', message: `reading ${p} took over ${timeoutMs} ms`, field: 'image.path' })), timeoutMs);
  });
  const read = (async () => {
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  })();
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
