import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { fail } from '../core/errors.js';
import { decodeImage } from '../core/image/decode.js';
import type { RasterImage } from '../core/image/raster.js';
import type { ServiceContext } from './context.js';

export const ImageInputSchema = z
  .object({
    base64: z.string().optional().describe('The image file (PNG, JPEG, WebP or TIFF) encoded as base64; a data: URL prefix is accepted.'),
    path: z.string().optional().describe('A file path on the server, only inside the configured allowed roots (PROMPTSEG_ALLOWED_ROOTS).'),
    image_id: z.string().regex(/^[0-9a-f]{64}$/, 'image_id is the 64-hex-digit id returned by an earlier call').optional().describe('The image_id returned by an earlier segment call, to prompt the same image again without resending it.'),
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

export async function resolveImage(ctx: ServiceContext, input: ImageInput, spacing?: [number, number], decode: DecodeOptions = {}): Promise<{ id: string; image: RasterImage }> {
  const given = (['base64', 'path', 'image_id'] as const).filter((k) => input[k] !== undefined);
  if (given.length !== 1) fail('invalid_argument', `give exactly one of image.base64, image.path or image.image_id (got ${given.length ? given.join(', ') : 'none'})`, 'image');
  let bytes: Uint8Array;
  if (input.image_id !== undefined) {
    const img = ctx.images.get(input.image_id);
    if (!img) fail('invalid_argument', `image_id ${input.image_id} is not (or no longer) held by this server; send the image again`, 'image.image_id');
    return { id: input.image_id, image: withSpacing(img!, spacing) };
  }
  bytes = await readImageBytes(ctx, input);
  const image = await decodeImage(bytes, { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS, ...decode });
  const h = createHash('sha256').update(bytes);
  if (decode.frame !== undefined || decode.window) h.update(JSON.stringify(decode));
  const id = h.digest('hex');
  ctx.images.set(id, image);
  return { id, image: withSpacing(image, spacing) };
}

function withSpacing(image: RasterImage, spacing?: [number, number]): RasterImage {
  return spacing ? { ...image, spacing: { row: spacing[0], col: spacing[1] } } : image;
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

/** Reads a file the caller named by path, only inside the configured allowed roots. */
export async function readAllowedFile(ctx: ServiceContext, p: string): Promise<Uint8Array> {
  const roots = ctx.config.PROMPTSEG_ALLOWED_ROOTS;
  if (!roots.length) fail('invalid_argument', 'reading images by path is disabled: the server has no PROMPTSEG_ALLOWED_ROOTS; send base64 instead', 'image.path');
  let real: string;
  try {
    real = await realpath(path.resolve(p));
  } catch {
    return fail('invalid_argument', `no readable file at ${p}`, 'image.path');
  }
  const okRoot = await Promise.all(roots.map(async (r) => {
    try {
      const rr = await realpath(r);
      return real === rr || real.startsWith(rr + path.sep);
    } catch {
      return false;
    }
  }));
  if (!okRoot.some(Boolean)) fail('invalid_argument', `${p} is outside the allowed roots (${roots.join(', ')})`, 'image.path');
  const st = await stat(real);
  if (!st.isFile()) fail('invalid_argument', `${p} is not a regular file`, 'image.path');
  if (st.size > ctx.config.PROMPTSEG_MAX_BODY_BYTES) fail('too_large', `${p} is ${st.size} bytes, over the limit of ${ctx.config.PROMPTSEG_MAX_BODY_BYTES}`, 'image.path');
  return readFile(real);
}
