import type { Context } from 'hono';
import type { AppError, ErrorKind } from '../core/errors.js';

/** The one place where error kinds become HTTP statuses. */
export const STATUS_BY_KIND: Record<ErrorKind, number> = {
  bad_input: 400,
  invalid_argument: 422,
  unsupported_format: 415,
  too_large: 413,
  unknown_model: 404,
  unknown_structure: 404,
  model_unavailable: 503,
  overloaded: 503,
  unauthorized: 401,
  forbidden: 403,
  deadline_exceeded: 504,
  upstream_failed: 502,
  internal: 500,
};

const TITLES: Record<ErrorKind, string> = {
  bad_input: 'Bad input',
  invalid_argument: 'Invalid argument',
  unsupported_format: 'Unsupported format',
  too_large: 'Too large',
  unknown_model: 'Unknown model',
  unknown_structure: 'Unknown structure',
  model_unavailable: 'Model unavailable',
  overloaded: 'Service overloaded',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  deadline_exceeded: 'Deadline exceeded',
  upstream_failed: 'The PACS failed',
  internal: 'Internal error',
};

export const problemType = (kind: ErrorKind) => `urn:promptseg:problem:${kind}`;

/** An RFC 9457 problem+json response; never carries a stack trace. */
export function problem(c: Context, error: AppError): Response {
  const status = STATUS_BY_KIND[error.kind];
  const body = {
    type: problemType(error.kind),
    title: TITLES[error.kind],
    status,
    detail: error.message,
    ...(error.field ? { field: error.field } : {}),
    request_id: c.get('requestId' as never) as string | undefined,
  };
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  if (status === 503) headers['retry-after'] = '2';
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  return new Response(JSON.stringify(body), { status, headers });
}
