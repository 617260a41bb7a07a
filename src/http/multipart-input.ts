import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import busboy from 'busboy';
import { AppFailure, fail } from '../core/errors.js';

/** A file part of a multipart form. */
export interface UploadedFile {
  filename: string;
  bytes: Uint8Array;
}

export type MultipartForm = Record<string, string | UploadedFile | (string | UploadedFile)[]>;

/** Largest text field (a prompts field holds a JSON array of the allowed prompts). */
const MAX_FIELD_BYTES = 64 * 1024;

/**
 * Reads a multipart/form-data body as it streams in (busboy), so that a large upload is parsed a
 * chunk at a time instead of in one pass over the whole body; text fields are capped at 64 KiB and
 * files at maxFileBytes. Malformed bodies, oversized parts and too many parts are typed errors.
 */
export function readMultipartForm(req: Request, limits: { maxFileBytes: number; maxPrompts: number; maxFiles?: number }): Promise<MultipartForm> {
  const { maxFileBytes, maxPrompts } = limits;
  const maxFiles = limits.maxFiles ?? 4;
  return new Promise((resolve, reject) => {
    const form: MultipartForm = {};
    const add = (name: string, v: string | UploadedFile) => {
      const had = form[name];
      form[name] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
    };
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: { 'content-type': req.headers.get('content-type') ?? '' }, limits: { fileSize: maxFileBytes, files: maxFiles, fields: 256, fieldSize: MAX_FIELD_BYTES, parts: 256 + maxFiles } });
    } catch {
      return reject(new AppFailure({ kind: 'bad_input', message: 'the multipart body has no boundary in its Content-Type' }));
    }
    const refuse = (e: AppFailure) => {
      source.unpipe(bb);
      source.destroy();
      reject(e);
    };
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) return refuse(new AppFailure({ kind: 'invalid_argument', message: `the form field "${name.slice(0, 40)}" is over ${MAX_FIELD_BYTES} bytes (a request takes a few prompts of a few words)`, field: name.slice(0, 40) }));
      add(name, value);
    });
    // every file counts against one budget too (a series of many slices arrives as many parts)
    let total = 0;
    bb.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => {
        chunks.push(c);
        total += c.length;
        if (total > maxFileBytes) refuse(new AppFailure({ kind: 'too_large', message: `the uploaded files are over ${maxFileBytes} bytes in all` }));
      });
      stream.on('limit', () => refuse(new AppFailure({ kind: 'too_large', message: `the file "${name.slice(0, 40)}" is over ${maxFileBytes} bytes`, field: name.slice(0, 40) })));
      stream.on('end', () => add(name, { filename: info.filename, bytes: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }));
    });
    bb.on('filesLimit', () => refuse(new AppFailure({ kind: 'bad_input', message: maxFiles > 4 ? `the form has more than ${maxFiles} files` : 'the form has more than 4 files; send one image' })));
    for (const ev of ['partsLimit', 'fieldsLimit'] as const) bb.on(ev, () => refuse(new AppFailure({ kind: 'invalid_argument', message: `the form has more than 256 fields; a request takes at most ${maxPrompts} prompts`, field: 'prompts' })));
    bb.on('error', () => refuse(new AppFailure({ kind: 'bad_input', message: 'the multipart body could not be parsed' })));
    bb.on('close', () => resolve(form));
    const source = req.body ? Readable.fromWeb(req.body as unknown as WebReadableStream<Uint8Array>) : Readable.from([]);
    source.on('error', () => refuse(new AppFailure({ kind: 'bad_input', message: 'the multipart body ended early' })));
    source.pipe(bb);
  });
}

/**
 * Turns a multipart form (file + text fields) into the segment operation's input object and the
 * uploaded file's bytes.
 * Fields: image (file), prompt (repeatable) or prompts (JSON array or comma list), model,
 * threshold, outputs (comma list or repeatable), overlay (true/false), pixel_spacing_mm ("row,col").
 */
export function multipartToSegmentInput(form: MultipartForm, maxPrompts: number): { input: Record<string, unknown>; upload: Uint8Array } {
  const bytes = formFile(form);
  const prompts = formPrompts(form, maxPrompts);
  // the file's bytes travel beside the input (RunExtras.upload), never through a base64 string
  const input: Record<string, unknown> = { image: {}, prompts };
  const model = first(form.model);
  if (typeof model === 'string' && model) input.model = model;
  const th = first(form.threshold);
  if (typeof th === 'string' && th !== '') input.threshold = Number(th);
  const outs = all(form.outputs).flatMap((o) => (typeof o === 'string' ? o.split(',').map((x) => x.trim()).filter(Boolean) : []));
  if (outs.length) input.outputs = outs;
  const ov = first(form.overlay);
  if (typeof ov === 'string') input.overlay = ov === 'true' || ov === '1' || ov === 'on';
  const sp = first(form.pixel_spacing_mm);
  if (typeof sp === 'string' && sp) input.pixel_spacing_mm = sp.split(',').map(Number);
  return { input, upload: bytes };
}

/**
 * The segment_volume operation's input from a multipart form: image (a .nii/.nii.gz file, a zip of
 * one DICOM series, or the series' files themselves, the field repeated), prompt (repeatable) or
 * prompts, axis, slice_range ("first,last"), model, threshold, previews.
 */
export function multipartToVolumeInput(form: MultipartForm, maxPrompts: number): { input: Record<string, unknown>; upload: Uint8Array; uploads?: UploadedFile[] } {
  const files = all(form.image ?? form.file).filter((f): f is UploadedFile => typeof f !== 'string');
  if (!files.length) fail('bad_input', 'the form has no image file (field "image")', 'image');
  const bytes = files[0].bytes;
  const input: Record<string, unknown> = { image: {}, prompts: formPrompts(form, maxPrompts) };
  const previews = first(form.previews);
  if (typeof previews === 'string') input.previews = previews === 'true' || previews === '1' || previews === 'on';
  const model = first(form.model);
  if (typeof model === 'string' && model) input.model = model;
  const th = first(form.threshold);
  if (typeof th === 'string' && th !== '') input.threshold = Number(th);
  const axis = first(form.axis);
  if (typeof axis === 'string' && axis !== '') input.axis = Number(axis);
  const range = first(form.slice_range);
  if (typeof range === 'string' && range) input.slice_range = range.split(',').map(Number);
  // several files: the slices of one DICOM series
  return { input, upload: bytes, ...(files.length > 1 ? { uploads: files } : {}) };
}

/** The form's one file (field "image", or "file"). */
function formFile(form: MultipartForm): Uint8Array {
  const file = first(form.image ?? form.file);
  if (!file || typeof file === 'string') fail('bad_input', 'the form has no image file (field "image")', 'image');
  return (file as UploadedFile).bytes;
}

/** Prompts from repeated "prompt" fields and "prompts" fields (a JSON array or a comma list), counted as they come. */
function formPrompts(form: MultipartForm, maxPrompts: number): string[] {
  const prompts: string[] = [];
  // counted as they come, so a form with a million prompts is refused without building them all
  const addPrompt = (p: string) => {
    if (prompts.length >= maxPrompts) fail('invalid_argument', `at most ${maxPrompts} prompts per request`, 'prompts');
    prompts.push(p);
  };
  for (const p of all(form.prompt)) if (typeof p === 'string') addPrompt(p);
  for (const p of all(form.prompts)) {
    if (typeof p !== 'string') continue;
    const t = p.trim();
    if (t.startsWith('[')) {
      let arr: unknown;
      try {
        arr = JSON.parse(t) as unknown;
      } catch {
        fail('bad_input', 'the prompts field is not a JSON array of strings', 'prompts');
      }
      if (!Array.isArray(arr)) fail('bad_input', 'the prompts field is not a JSON array of strings', 'prompts');
      for (const x of arr as unknown[]) addPrompt(String(x));
    } else for (const x of t.split(',')) addPrompt(x.trim());
  }
  return prompts;
}

const all = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const first = <T>(v: T | T[] | undefined): T | undefined => (Array.isArray(v) ? v[0] : v);
