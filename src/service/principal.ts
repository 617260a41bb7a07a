import { createHash, createHmac } from 'node:crypto';

/**
 * Who is asking, as an opaque id: a hash of the bearer token (the auth middleware has already
 * checked it), or one shared principal when the server has no tokens. Used to scope what one
 * caller can name (image ids, MCP sessions) to that caller.
 */
export function principalOf(authorization: string | undefined): string {
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  return m ? createHash('sha256').update(m[1].trim()).digest('hex') : 'anonymous';
}

/**
 * The image_id a caller gets for image bytes: keyed with the server's secret and scoped to the
 * principal, so that it reveals nothing about the bytes (no membership oracle: knowing an image
 * does not tell whether someone else sent it) and one caller's id is unknown to another.
 */
export function imageIdFor(key: Buffer, principal: string, bytesSha256: string, decodeOptions: string): string {
  return createHmac('sha256', key).update(principal).update('\0').update(bytesSha256).update('\0').update(decodeOptions).digest('hex');
}
