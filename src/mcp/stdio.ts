import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { mcpMessageLimit, type Config } from '../config/env.js';
import { createServiceContext, disposeServiceContext } from '../service/context.js';
import { createMcpServer } from './server.js';

/** Serves MCP on stdin/stdout. stdout carries protocol frames only; diagnostics go to stderr. */
export async function runMcpStdio(config: Config): Promise<void> {
  const ctx = createServiceContext(config);
  const server = createMcpServer(ctx);
  const transport = new StdioServerTransport(process.stdin, process.stdout, { maxBufferSize: mcpMessageLimit(config) });
  transport.onclose = () => {
    void disposeServiceContext(ctx).finally(() => process.exit(0));
  };
  await server.connect(transport);
  ctx.pipeline.registry.get().load().catch((e: Error) => process.stderr.write(`promptseg: model failed to load: ${e.message}\n`));
  process.stderr.write('promptseg: MCP server ready on stdio\n');
}
