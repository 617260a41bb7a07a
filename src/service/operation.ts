import type { z } from 'zod';
import type { Result } from '../core/errors.js';
import type { ServiceContext } from './context.js';

/** Progress callback a long operation may call (MCP forwards it as progress notifications). */
export type ProgressFn = (done: number, total: number, message?: string) => void;

export interface RunExtras {
  progress?: ProgressFn;
  /** Which front door called, for counters and logs. */
  via?: 'http' | 'mcp' | 'cli' | 'eval';
  /** The caller as an opaque id (principal.ts); ids a caller is given are scoped to it. */
  principal?: string;
  /** Aborted when the caller goes away (HTTP disconnect, MCP cancellation): the remaining work stops. */
  signal?: AbortSignal;
  /** An image uploaded as a file (multipart), used when the input's image names none. */
  upload?: Uint8Array;
  /** Several files uploaded at once (multipart): the slices of one DICOM series. */
  uploads?: { name: string; bytes: Uint8Array }[];
}

/**
 * One operation of the service: the HTTP route and the MCP tool are both generated from this,
 * so they cannot drift. Input roots are plain objects (MCP tools need an object schema).
 */
export interface Operation<I extends z.ZodObject = z.ZodObject, O extends z.ZodType = z.ZodType> {
  name: string;
  title: string;
  description: string;
  http: { method: 'get' | 'post' | 'delete'; path: string; pathParams?: string[] };
  /** The MCP tool name (snake_case verb); the operation name when omitted. */
  mcpName?: string;
  input: I;
  output: O;
  run(ctx: ServiceContext, input: z.infer<I>, extras?: RunExtras): Promise<Result<z.infer<O>>>;
}

export const defineOperation = <I extends z.ZodObject, O extends z.ZodType>(op: Operation<I, O>): Operation<I, O> => op;
