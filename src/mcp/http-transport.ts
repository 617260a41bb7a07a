import { randomUUID } from 'node:crypto';
import { principalOf } from '../service/principal.js';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { ServiceContext } from '../service/context.js';
import { mcpMessageLimit } from '../config/env.js';
import { createMcpServer } from './server.js';
import { SessionTable } from './session-table.js';

/** Ends the Streamable HTTP sessions (shutdown). */
export interface McpHttpHandle {
  closeAll(): Promise<void>;
}

const jsonRpcError = (status: number, code: number, message: string) =>
  new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), { status, headers: { 'content-type': 'application/json' } });

/** A request's JSON body, or the JSON-RPC error response saying it is not JSON. */
async function jsonBody(req: Request): Promise<unknown> {
  try {
    return await req.clone().json();
  } catch {
    return jsonRpcError(400, -32700, 'the request body is not valid JSON');
  }
}

/**
 * Streamable HTTP MCP at /mcp: a fresh McpServer and transport per session, behind the app's
 * Host and Origin checks (DNS rebinding), bearer-token auth and body limit.
 */
export function mountMcpHttp(app: OpenAPIHono, ctx: ServiceContext): McpHttpHandle {
  const sessions = new SessionTable<{ transport: WebStandardStreamableHTTPServerTransport; server: McpServer; close(): Promise<void> }>({
    max: ctx.config.PROMPTSEG_MCP_SESSIONS,
    perPrincipal: ctx.config.PROMPTSEG_MCP_SESSIONS_PER_TOKEN,
    idleMs: ctx.config.PROMPTSEG_MCP_SESSION_IDLE_MS,
  });

  if (ctx.config.PROMPTSEG_MCP_STATELESS) {
    mountStateless(app, ctx);
    return { closeAll: async () => undefined };
  }
  app.all('/mcp', async (c) => {
    const sid = c.req.header('mcp-session-id');
    const principal = principalOf(c.req.header('authorization'));
    if (sid) {
      // a session made with another token is as unknown as a made-up id
      const s = sessions.get(sid, principal);
      if (!s) return jsonRpcError(404, -32001, 'unknown or expired MCP session; initialize again');
      return s.transport.handleRequest(c.req.raw);
    }
    if (c.req.method !== 'POST') return jsonRpcError(400, -32000, 'no mcp-session-id header: send initialize first');
    const body = await jsonBody(c.req.raw);
    if (body instanceof Response) return body;
    const isInit = (m: unknown) => typeof m === 'object' && m !== null && (m as { method?: string }).method === 'initialize';
    if (!(Array.isArray(body) ? body.some(isInit) : isInit(body))) return jsonRpcError(400, -32000, 'no mcp-session-id header: send initialize first');
    sessions.reserve(principal);
    const server = createMcpServer(ctx, { principal });
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.add(id, principal, { transport, server, close: () => transport.close() });
      },
      onsessionclosed: (id) => {
        sessions.forget(id);
      },
      maxRequestBodySize: mcpMessageLimit(ctx.config),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.forget(transport.sessionId);
    };
    await server.connect(transport);
    return transport.handleRequest(c.req.raw, { parsedBody: body });
  });
  return { closeAll: () => sessions.closeAll() };
}

/**
 * Stateless Streamable HTTP (PROMPTSEG_MCP_STATELESS): a fresh server and transport per POST, no
 * session id, each answer a whole JSON response (no progress notifications). Every tool call
 * carries what it needs (image_id, result ids), which any replica resolves through the shared
 * store (PROMPTSEG_REDIS_URL), so no session state has to follow a client between replicas.
 */
function mountStateless(app: OpenAPIHono, ctx: ServiceContext): void {
  app.all('/mcp', async (c) => {
    if (c.req.method !== 'POST') return jsonRpcError(405, -32000, 'this server runs MCP without sessions (PROMPTSEG_MCP_STATELESS): POST each request');
    const body = await jsonBody(c.req.raw);
    if (body instanceof Response) return body;
    const server = createMcpServer(ctx, { principal: principalOf(c.req.header('authorization')) });
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true, maxRequestBodySize: mcpMessageLimit(ctx.config) });
    await server.connect(transport);
    const res = await transport.handleRequest(c.req.raw, { parsedBody: body });
    void server.close();
    return res;
  });
}
