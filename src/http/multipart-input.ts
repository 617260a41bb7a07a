import { fail } from '../core/errors.js';

/**
 * Turns a multipart form (file + text fields) into the segment operation's input object and the
 * uploaded file's bytes.
 * Fields: image (file), prompt (repeatable) or prompts (JSON array or comma list), model,
 * threshold, outputs (comma list or repeatable), overlay (true/false), pixel_spacing_mm ("row,col").
 */
export async function multipartToSegmentInput(form: Record<string, string | File | (string | File)[]>, maxPrompts: number): Promise<{ input: Record<string, unknown>; upload: Uint8Array }> {
  const file = first(form.image ?? form.file);
  if (!file || typeof file === 'string') fail('bad_input', 'the form has no image file (field "image")', 'image');
  const bytes = new Uint8Array(await (file as File).arrayBuffer());
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

const all = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const first = <T>(v: T | T[] | undefined): T | undefined => (Array.isArray(v) ? v[0] : v);
