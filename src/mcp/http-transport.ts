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
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return jsonRpcError(400, -32700, 'the request body is not valid JSON');
    }
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
