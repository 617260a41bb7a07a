import { randomUUID } from 'node:crypto';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { ServiceContext } from '../service/context.js';
import { mcpMessageLimit } from '../config/env.js';
import { createMcpServer } from './server.js';

const MAX_SESSIONS = 64;

const jsonRpcError = (status: number, code: number, message: string) =>
  new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), { status, headers: { 'content-type': 'application/json' } });

/** Hosts and origins a browser may legitimately use to reach this server (DNS-rebinding guard). */
function isLocalHost(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '127.0.0.1' || h === '::1' || h.startsWith('127.');
}

/**
 * Streamable HTTP MCP at /mcp: a fresh McpServer and transport per session, Host and Origin
 * checked against DNS rebinding, behind the app's bearer-token auth and body limit.
 */
export function mountMcpHttp(app: OpenAPIHono, ctx: ServiceContext): void {
  const sessions = new Map<string, { transport: WebStandardStreamableHTTPServerTransport; server: McpServer }>();
  const allowedHosts = new Set([ctx.config.HOST.toLowerCase()]);
  const allowedOrigins = new Set(ctx.config.PROMPTSEG_CORS_ORIGINS);

  app.all('/mcp', async (c) => {
    const host = c.req.header('host') ?? '';
    const hostOnly = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
    if (!isLocalHost(host) && !allowedHosts.has(hostOnly)) return jsonRpcError(403, -32000, `Host ${host} is not allowed`);
    const origin = c.req.header('origin');
    if (origin) {
      let ok = allowedOrigins.has(origin);
      try {
        ok ||= isLocalHost(new URL(origin).host);
      } catch {
        ok = false;
      }
      if (!ok) return jsonRpcError(403, -32000, `Origin ${origin} is not allowed`);
    }
    const sid = c.req.header('mcp-session-id');
    if (sid) {
      const s = sessions.get(sid);
      if (!s) return jsonRpcError(404, -32001, 'unknown or expired MCP session; initialize again');
      return s.transport.handleRequest(c.req.raw);
    }
    if (c.req.method !== 'POST') return jsonRpcError(400, -32000, 'no mcp-session-id header: send initialize first');
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return jsonRpcError(400, -32700, 'the request body is not valid JSON');
    }
    const isInit = (m: unknown) => typeof m === 'object' && m !== null && (m as { method?: string }).method === 'initialize';
    if (!(Array.isArray(body) ? body.some(isInit) : isInit(body))) return jsonRpcError(400, -32000, 'no mcp-session-id header: send initialize first');
    if (sessions.size >= MAX_SESSIONS) {
      const oldest = sessions.keys().next().value as string;
      const s = sessions.get(oldest)!;
      sessions.delete(oldest);
      void s.transport.close();
    }
    const server = createMcpServer(ctx);
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
      maxRequestBodySize: mcpMessageLimit(ctx.config),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    return transport.handleRequest(c.req.raw, { parsedBody: body });
  });
}
