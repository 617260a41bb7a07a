import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, statSync, unlinkSync, renameSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fail } from '../errors.js';

export interface PullFile {
  path: string;
  sha256?: string;
  bytes?: number;
}

export interface PullPlan {
  repo: string;
  revision: string;
  files: PullFile[];
  dest: string;
}

export interface PullOptions {
  /** Hub base URL; HF_ENDPOINT in the environment, as the hub's own clients read it. */
  endpoint: string;
  retries?: number;
  progress?: (file: string, done: number, total: number | undefined) => void;
}

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/**
 * Downloads a bundle's files from a Hugging Face-style hub (`<endpoint>/<repo>/resolve/<revision>/<path>`)
 * into `dest`: files already present with the right sha256 are kept, partial downloads resume with
 * HTTP Range from `<file>.part`, dropped connections are retried, and each finished file is checked
 * against its sha256 and size before it replaces the old one.
 */
export async function pullBundle(plan: PullPlan, o: PullOptions): Promise<{ downloaded: string[]; kept: string[] }> {
  mkdirSync(plan.dest, { recursive: true });
  const downloaded: string[] = [], kept: string[] = [];
  for (const f of plan.files) {
    if (f.path.includes('..') || path.isAbsolute(f.path)) fail('bad_input', `refusing file path ${f.path} outside the model folder`, 'files');
    const target = path.join(plan.dest, f.path);
    mkdirSync(path.dirname(target), { recursive: true });
    const url = `${o.endpoint.replace(/\/$/, '')}/${plan.repo}/resolve/${encodeURIComponent(plan.revision)}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
    // a manifest without the file's sha256 takes the hub's: LFS files carry it in X-Linked-Etag
    const expected = f.sha256 ? f : { ...f, ...(await hubFileInfo(url)) };
    if (existsSync(target) && expected.sha256 && (await sha256File(target)) === expected.sha256) {
      kept.push(f.path);
      continue;
    }
    await downloadResumable(url, target, expected, o);
    downloaded.push(f.path);
  }
  return { downloaded, kept };
}

/**
 * The sha256 and size the hub states for a file, from a HEAD request that does not follow the
 * redirect to the CDN: X-Linked-Etag is an LFS file's sha256 and X-Linked-Size its size (plain git
 * files have neither; they are then checked by size only when the server states one).
 */
export async function hubFileInfo(url: string): Promise<{ sha256?: string; bytes?: number }> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'HEAD', redirect: 'manual' });
  } catch {
    return {}; // the GET that follows reports the network error with its reason
  }
  const tag = (res.headers.get('x-linked-etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
  const size = Number(res.headers.get('x-linked-size'));
  return { ...(/^[0-9a-f]{64}$/.test(tag) ? { sha256: tag } : {}), ...(Number.isFinite(size) && size > 0 ? { bytes: size } : {}) };
}

async function downloadResumable(url: string, target: string, f: PullFile, o: PullOptions): Promise<void> {
  const part = target + '.part';
  const retries = o.retries ?? 4;
  for (let attempt = 0; ; attempt++) {
    const have = existsSync(part) ? statSync(part).size : 0;
    let res: Response;
    try {
      res = await fetch(url, { headers: have ? { range: `bytes=${have}-` } : {}, redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      if (attempt < retries && cause?.code !== 'ENOTFOUND' && cause?.code !== 'ECONNREFUSED' && cause?.code !== 'EAI_AGAIN') continue;
      return fail('model_unavailable', `cannot reach the model hub at ${new URL(url).origin} (${cause?.code ?? cause?.message ?? (e as Error).message}); pulling a bundle needs the network once, or a mirror in HF_ENDPOINT`);
    }
    if (res.status === 404) fail('model_unavailable', `the hub has no file ${f.path} (404 at ${url})`);
    if (res.status === 416 && have) {
      unlinkSync(part); // the partial file is longer than the remote one: start again
      continue;
    }
    if (res.status !== 200 && res.status !== 206) {
      if (attempt < retries && res.status >= 500) continue;
      fail('model_unavailable', `the hub answered ${res.status} for ${f.path}`);
    }
    const append = res.status === 206 && have > 0;
    const len = Number(res.headers.get('content-length'));
    const total = f.bytes ?? (Number.isFinite(len) && len > 0 ? (append ? have : 0) + len : undefined);
    let done = append ? have : 0;
    // each chunk is written before the next is read, so whatever arrived survives a dropped connection
    const out = await open(part, append ? 'a' : 'w');
    let broken = false;
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        await out.write(chunk);
        done += chunk.length;
        o.progress?.(f.path, done, total);
      }
    } catch {
      broken = true;
    } finally {
      await out.close();
    }
    if (broken) {
      if (attempt < retries) continue; // resume from what arrived
      fail('model_unavailable', `the download of ${f.path} kept failing after ${retries + 1} attempts; run the pull again to resume`);
    }
    const size = statSync(part).size;
    if (f.bytes !== undefined && size < f.bytes) {
      if (attempt < retries) continue;
      fail('model_unavailable', `${f.path} arrived incomplete (${size} of ${f.bytes} bytes); run the pull again to resume`);
    }
    if (f.sha256) {
      const got = await sha256File(part);
      if (got !== f.sha256) {
        unlinkSync(part);
        fail('model_unavailable', `${f.path} failed verification: sha256 ${got} differs from the expected ${f.sha256}; the partial file was removed`);
      }
    }
    renameSync(part, target);
    return;
  }
}
