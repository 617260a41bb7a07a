import { serve, type ServerType } from '@hono/node-server';
import { isIP } from 'node:net';
import pino from 'pino';
import type { Config } from '../config/env.js';
import { createApp } from '../http/app.js';
import { mountMcpHttp, type McpHttpHandle } from '../mcp/http-transport.js';
import { createServiceContext, disposeServiceContext, type ServiceContext } from '../service/context.js';

/**
 * After a burst of large requests, the buffers they freed wait for the next garbage collection,
 * which an idle server does not run: memory would stay at its peak. When the process runs with
 * --expose-gc (as `npm start` does) and nothing is in flight for a second, one collection runs
 * once the external memory (buffers) has grown by 64 MB since the last.
 */
function idleCollector(ctx: ServiceContext, inFlight: () => number): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return () => undefined;
  let timer: NodeJS.Timeout | undefined;
  let after = process.memoryUsage().external;
  // one check a second at most (frequent health probes must not keep postponing it); work still in
  // flight schedules the next check when its response finishes
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      // any request still open (reading an upload, inflating a volume, making masks outside the
      // inference queue) would wait out the whole collection
      const busy = inFlight() + ctx.queue.active + ctx.queue.depth + ctx.decodeQueue.active + ctx.uploadQueue.active > 0;
      if (busy || process.memoryUsage().external < after + 64 * 1024 * 1024) return;
      gc();
      after = process.memoryUsage().external;
    }, 1000);
    timer.unref();
  };
}

/**
 * A server that listens beyond this machine and reads files by path must know who asks: starting
 * one with PROMPTSEG_ALLOWED_ROOTS and no PROMPTSEG_API_TOKENS is refused, with the fix named.
 */
function refuseOpenFileReads(config: Config): void {
  const host = config.HOST.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!loopback && config.PROMPTSEG_ALLOWED_ROOTS.length && !config.PROMPTSEG_API_TOKENS.length) {
    throw new Error(`HOST ${config.HOST} is reachable from other machines and PROMPTSEG_ALLOWED_ROOTS lets callers read files: set PROMPTSEG_API_TOKENS (or listen on 127.0.0.1)`);
  }
}

export interface RunningServer {
  ctx: ServiceContext;
  server: ServerType;
  url: string;
  close(): Promise<void>;
}

/** Starts the HTTP server (API, web page, MCP at /mcp) and warms the default model. */
export async function startServer(config: Config, opts: { warm?: boolean; log?: boolean } = {}): Promise<RunningServer> {
  refuseOpenFileReads(config);
  const logger = pino({ level: opts.log === false ? 'silent' : config.PROMPTSEG_LOG_LEVEL, base: undefined }, pino.destination(2));
  const ctx = createServiceContext(config);
  let mcp: McpHttpHandle | undefined;
  const app = createApp(ctx, { logger, mount: (a, c) => (mcp = mountMcpHttp(a, c)) });
  if (opts.warm !== false) {
    ctx.pipeline.registry.get().load().then(
      () => logger.info({ model: ctx.pipeline.registry.defaultId }, 'model loaded'),
      (e: Error) => logger.error({ err: e.message }, 'model failed to load'),
    );
  }
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, () => resolve(s));
  });
  let open = 0;
  const collector = idleCollector(ctx, () => open);
  server.on('request', (_req, res) => {
    open++;
    res.once('close', () => {
      open--;
      collector();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.PORT;
  const url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`;
  logger.info({ url }, 'promptseg listening');
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      ctx.draining = true;
      // in-flight requests finish; open MCP event streams (kept alive by the SDK) are ended, and
      // whatever is still open after the grace period is cut, so shutdown never hangs
      const closed = new Promise<void>((r) => server.close(() => r()));
      await mcp?.closeAll();
      const http = server as unknown as { closeIdleConnections?: () => void; closeAllConnections?: () => void };
      http.closeIdleConnections?.();
      const grace = setTimeout(() => http.closeAllConnections?.(), config.PROMPTSEG_SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(grace);
      await disposeServiceContext(ctx);
    })());
  return { ctx, server, url, close };
}
