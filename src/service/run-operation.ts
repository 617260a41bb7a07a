import { AppFailure, err, type Result } from '../core/errors.js';
import type { ServiceContext } from './context.js';
import { count } from './context.js';
import type { Operation, RunExtras } from './operation.js';
import { requestStop, runStoppable } from '../core/pipeline/cancel.js';

/**
 * Validates raw input against the operation's schema and runs it. Typed failures thrown deep in
 * core (AppFailure) become results here; anything else is a bug and becomes `internal` without
 * leaking its stack to callers.
 */
export async function runOperation(ctx: ServiceContext, op: Operation, raw: unknown, extras: RunExtras = {}): Promise<Result<unknown>> {
  const parsed = op.input.safeParse(raw ?? {});
  count(ctx, `op_${op.name}_total`);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    const field = i.path.join('.') || undefined;
    count(ctx, `op_${op.name}_errors_invalid_argument`);
    return err('invalid_argument', `${field ? `${field}: ` : ''}${i.message}`, field);
  }
  if (ctx.shared && ctx.pipeline.adapters) {
    // adapters made or removed on other replicas; without Redis for a moment, this replica's own serve on
    await ctx.shared.syncAdapters(ctx.pipeline.adapters).catch(() => undefined);
  }
  try {
    // one deadline for the whole request (queue wait included), cut short when the caller leaves
    const remote = extras.via === 'http' || extras.via === 'mcp'; // the CLI and eval run to the end
    const stop = remote ? requestStop(ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS, extras.signal) : undefined;
    const r = await runStoppable(stop, () => op.run(ctx, parsed.data, extras)).finally(() => stop?.done());
    if (!r.ok) count(ctx, `op_${op.name}_errors_${r.error.kind}`);
    return r;
  } catch (e) {
    if (e instanceof AppFailure) {
      count(ctx, `op_${op.name}_errors_${e.error.kind}`);
      return { ok: false, error: e.error };
    }
    count(ctx, `op_${op.name}_errors_internal`);
    process.stderr.write(`[promptseg] internal error in ${op.name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return err('internal', 'an internal error occurred; it has been logged');
  }
}
