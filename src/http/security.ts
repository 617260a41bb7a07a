import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import type { Config } from '../config/env.js';

/**
 * The host part of a Host header or URL host ("[::1]:8787" -> "::1", "Example.org:80" ->
 * "example.org"); undefined when it is not a plausible host.
 */
export function hostnameOf(host: string): string | undefined {
  const h = host.trim().toLowerCase();
  const v6 = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h);
  if (v6) return v6[1];
  const m = /^([a-z0-9._-]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1].replace(/\.$/, '') : undefined;
}

/** Which Host headers this server answers, from its configuration. */
export interface HostPolicy {
  any: boolean;
  names: Set<string>;
}

export function hostPolicy(config: Config): HostPolicy {
  const extra = config.PROMPTSEG_ALLOWED_HOSTS.map((h) => h.toLowerCase());
  const configured = hostnameOf(config.HOST.includes(':') && !config.HOST.startsWith('[') ? `[${config.HOST}]` : config.HOST);
  return { any: extra.includes('*'), names: new Set(['localhost', ...(configured ? [configured] : []), ...extra.filter((h) => h !== '*')]) };
}

/**
 * DNS rebinding defence: a page on an attacker's name that resolves to this machine reaches the
 * server with the attacker's name in Host. An IP literal cannot be rebound (no name is looked
 * up), so any IP literal is accepted; names only when they are localhost, the configured HOST or
 * listed in PROMPTSEG_ALLOWED_HOSTS. Parsed exactly: "127.attacker.example" is a name, not an IP.
 */
export function hostAllowed(policy: HostPolicy, host: string | undefined): boolean {
  if (policy.any) return true;
  if (!host) return false;
  const name = hostnameOf(host);
  if (!name) return false;
  return isIP(name) !== 0 || policy.names.has(name);
}

/**
 * A browser's Origin is accepted when it is listed in PROMPTSEG_CORS_ORIGINS, or when it is this
 * server's own origin (the web page): its host equals the request's Host and that host is allowed.
 * "null" (sandboxed frames, file: pages) and any other site are refused.
 */
export function originAllowed(config: Config, policy: HostPolicy, origin: string, host: string | undefined): boolean {
  if (config.PROMPTSEG_CORS_ORIGINS.includes(origin)) return true;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  return !!host && u.host.toLowerCase() === host.trim().toLowerCase() && hostAllowed(policy, host);
}

/** Why a request's Host or Origin is refused, or undefined when both are acceptable. */
export function refusedBecause(config: Config, policy: HostPolicy, host: string | undefined, origin: string | undefined): string | undefined {
  if (!hostAllowed(policy, host)) return host ? `Host ${JSON.stringify(host.slice(0, 100))} is not one this server answers (localhost, an IP address, HOST or PROMPTSEG_ALLOWED_HOSTS)` : 'the request has no Host header';
  if (origin !== undefined && !originAllowed(config, policy, origin, host)) return `Origin ${JSON.stringify(origin.slice(0, 100))} is not allowed (this server's own origin or PROMPTSEG_CORS_ORIGINS)`;
  return undefined;
}

const sha256b64 = (s: string) => createHash('sha256').update(s, 'utf8').digest('base64');

/**
 * A Content-Security-Policy for a page whose only script and style are inline: each allowed by
 * its hash, nothing loaded from elsewhere, never framed.
 */
export function pageCsp(html: string): string {
  const hashes = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => `'sha256-${sha256b64(m[1])}'`).join(' ') || "'none'";
  return [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Headers every response carries: no MIME sniffing, no framing, no referrer leaks. */
export const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  c.res.headers.set('x-content-type-options', 'nosniff');
  c.res.headers.set('x-frame-options', 'DENY');
  c.res.headers.set('referrer-policy', 'no-referrer');
  if (!c.res.headers.has('content-security-policy')) c.res.headers.set('content-security-policy', "default-src 'none'; frame-ancestors 'none'");
};
