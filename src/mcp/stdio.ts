import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { mcpMessageLimit, type Config } from '../config/env.js';
import { createServiceContext, disposeServiceContext } from '../service/context.js';
import { createMcpServer } from './server.js';

/** Serves MCP on stdin/stdout. stdout carries protocol frames only; diagnostics go to stderr. */
export async function runMcpStdio(config: Config): Promise<void> {
  const ctx = createServiceContext(config);
  const server = createMcpServer(ctx);
  const limit = mcpMessageLimit(config);
  const transport = new StdioServerTransport(process.stdin, process.stdout, { maxBufferSize: limit });
  // a message over the limit ends the session (the stream cannot be resynchronised): the client is
  // told why in a JSON-RPC error before the process exits, instead of seeing it vanish
  let farewell: Promise<void> | undefined;
  transport.onerror = (e) => {
    if (!/exceeded maximum size/.test(e.message)) return;
    const message = `an MCP message is over the limit of ${limit} bytes (images up to PROMPTSEG_MAX_BODY_BYTES, as base64); the server is closing this session`;
    process.stderr.write(`promptseg: ${message}\n`);
    farewell = new Promise((r) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message } }) + '\n', () => r()));
  };
  transport.onclose = () => {
    void disposeServiceContext(ctx)
      .then(() => farewell)
      .finally(() => process.exit(farewell ? 1 : 0));
  };
  await server.connect(transport);
  ctx.pipeline.registry.get().load().catch((e: Error) => process.stderr.write(`promptseg: model failed to load: ${e.message}\n`));
  process.stderr.write('promptseg: MCP server ready on stdio\n');
}
