import { randomBytes } from 'node:crypto';
import { fail } from '../core/errors.js';
import type { Config } from '../config/env.js';

/**
 * A DICOMweb client for the PACS named by PROMPTSEG_DICOMWEB_URL: QIDO-RS to find series, WADO-RS
 * to fetch a series' instances, STOW-RS to store a SEG. Every call has the configured timeout; a
 * PACS that cannot be reached, answers 4xx/5xx or breaks off mid-transfer is an `upstream_failed`
 * error naming what failed (never the patient's identifiers: UIDs stay out of messages and logs).
 */
export interface SeriesSummary {
  study_uid: string;
  series_uid: string;
  modality: string | null;
  description: string | null;
  instances: number | null;
}

const DICOM_JSON = 'application/dicom+json';

function base(config: Config): string {
  if (!config.PROMPTSEG_DICOMWEB_URL) return fail('invalid_argument', 'this server has no PACS: set PROMPTSEG_DICOMWEB_URL to a DICOMweb base URL', 'dicomweb');
  return config.PROMPTSEG_DICOMWEB_URL.replace(/\/+$/, '');
}

async function call(config: Config, what: string, url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (config.PROMPTSEG_DICOMWEB_AUTH) headers.set('authorization', config.PROMPTSEG_DICOMWEB_AUTH);
  let res: Response;
  try {
    res = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(config.PROMPTSEG_DICOMWEB_TIMEOUT_MS) });
  } catch (e) {
    const timedOut = (e as { name?: string }).name === 'TimeoutError';
    return fail('upstream_failed', timedOut ? `the PACS did not answer ${what} within ${config.PROMPTSEG_DICOMWEB_TIMEOUT_MS} ms` : `the PACS could not be reached for ${what} (${(e as Error).message})`, 'dicomweb');
  }
  if (res.status === 404) return fail('bad_input', `the PACS has no such ${what.replace(/^(fetching|finding|storing) /, '')} (404)`, 'dicomweb');
  if (!res.ok) return fail('upstream_failed', `the PACS answered ${what} with ${res.status} ${res.statusText}`, 'dicomweb');
  return res;
}

const tag = (o: Record<string, { Value?: unknown[] }>, t: string): string | null => {
  const v = o[t]?.Value?.[0];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : null;
};

/** QIDO-RS: the series of a study, or the series matching a search (e.g. Modality=CT). */
export async function findSeries(config: Config, q: { study_uid?: string; modality?: string; limit?: number }): Promise<SeriesSummary[]> {
  const params = new URLSearchParams();
  if (q.modality) params.set('Modality', q.modality);
  params.set('limit', String(q.limit ?? 100));
  params.append('includefield', '0008103E');
  params.append('includefield', '00201209');
  const url = q.study_uid ? `${base(config)}/studies/${encodeURIComponent(q.study_uid)}/series?${params}` : `${base(config)}/series?${params}`;
  const res = await call(config, 'finding series', url, { headers: { accept: DICOM_JSON } });
  const text = await res.text();
  const list = (text.trim() ? JSON.parse(text) : []) as Record<string, { Value?: unknown[] }>[];
  return list.map((o) => ({
    study_uid: tag(o, '0020000D') ?? '',
    series_uid: tag(o, '0020000E') ?? '',
    modality: tag(o, '00080060'),
    description: tag(o, '0008103E'),
    instances: tag(o, '00201209') === null ? null : Number(tag(o, '00201209')),
  }));
}

/** The parts of a multipart/related body (WADO-RS), as bytes. */
export function multipartParts(body: Uint8Array, contentType: string): Uint8Array[] {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) return fail('upstream_failed', 'the PACS answered with a multipart body without a boundary', 'dicomweb');
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const delim = Buffer.from(`--${m[1]}`);
  const parts: Uint8Array[] = [];
  let at = buf.indexOf(delim);
  while (at >= 0) {
    const start = at + delim.length;
    if (buf[start] === 0x2d && buf[start + 1] === 0x2d) break; // the closing delimiter
    const headerEnd = buf.indexOf('\r\n\r\n', start);
    const next = buf.indexOf(delim, start);
    if (headerEnd < 0 || next < 0) return fail('upstream_failed', 'the PACS broke off a series transfer mid-way (a multipart part has no end)', 'dicomweb');
    let end = next;
    if (buf[end - 2] === 0x0d && buf[end - 1] === 0x0a) end -= 2;
    parts.push(buf.subarray(headerEnd + 4, end));
    at = next;
  }
  return parts;
}

/** WADO-RS: every instance of a series, as DICOM files (at most maxBytes in all). */
export async function fetchSeries(config: Config, studyUid: string, seriesUid: string, maxBytes: number): Promise<{ name: string; bytes: Uint8Array }[]> {
  const url = `${base(config)}/studies/${encodeURIComponent(studyUid)}/series/${encodeURIComponent(seriesUid)}`;
  const res = await call(config, 'fetching series', url, { headers: { accept: 'multipart/related; type="application/dicom"' } });
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) return fail('too_large', `the series is ${declared} bytes, over ${maxBytes} (PROMPTSEG_MAX_VOLUME_BYTES)`, 'dicomweb');
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      n += c.byteLength;
      if (n > maxBytes) return fail('too_large', `the series is over ${maxBytes} bytes (PROMPTSEG_MAX_VOLUME_BYTES)`, 'dicomweb');
      chunks.push(c);
    }
  } catch (e) {
    if ((e as { error?: unknown }).error) throw e;
    return fail('upstream_failed', 'the PACS broke off the series transfer mid-way', 'dicomweb');
  }
  const parts = multipartParts(Buffer.concat(chunks), res.headers.get('content-type') ?? '');
  if (!parts.length) return fail('bad_input', 'the PACS returned no instances for the series', 'dicomweb');
  return parts.map((bytes, i) => ({ name: `instance-${i + 1}.dcm`, bytes }));
}

/** STOW-RS: stores DICOM files in one request; the PACS stores all of them or reports which failed. */
export async function storeInstances(config: Config, files: Uint8Array[]): Promise<{ stored: number }> {
  const boundary = `promptseg-${randomBytes(12).toString('hex')}`;
  const pieces: Buffer[] = [];
  for (const f of files) {
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), Buffer.from(f.buffer, f.byteOffset, f.byteLength), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  const res = await call(config, 'storing the SEG', `${base(config)}/studies`, {
    method: 'POST',
    headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: DICOM_JSON },
    body: Buffer.concat(pieces),
  });
  const text = await res.text();
  const reply = (text.trim() ? JSON.parse(text) : {}) as Record<string, { Value?: unknown[] }>;
  const failed = reply['00081198']?.Value?.length ?? 0; // FailedSOPSequence
  if (failed) return fail('upstream_failed', `the PACS refused ${failed} of ${files.length} instance(s) it was sent`, 'dicomweb');
  return { stored: files.length };
}
