import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { requestId } from 'hono/request-id';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { mcpMessageLimit } from '../config/env.js';
import { err, type AppError, type Result } from '../core/errors.js';
import type { ServiceContext } from '../service/context.js';
import { count } from '../service/context.js';
import { OPERATIONS } from '../service/operation-table.js';
import type { Operation } from '../service/operation.js';
import { runOperation } from '../service/run-operation.js';
import { principalOf } from '../service/principal.js';
import { getDicomSeg, getResultArtifact, getVolumeDicomSeg, getVolumeMask, getVolumePreview } from '../service/result-artifacts.js';
import { multipartToSegmentInput, multipartToVolumeInput, readMultipartForm } from './multipart-input.js';
import { problem, problemType } from './problem.js';
import { renderMetrics } from './metrics.js';
import { WEB_PAGE_HTML } from './web-page.js';
import { renderDocsPage } from './docs-page.js';
import { hostPolicy, pageCsp, refusedBecause, securityHeaders } from './security.js';

export interface HttpOptions {
  logger?: Logger;
  /** Extra routes mounted by main (the MCP endpoint); they get the same auth and limits. */
  mount?: (app: OpenAPIHono, ctx: ServiceContext) => void;
}

/** How much of an over-limit body is read and dropped so that the client sees its 413. */
const DRAIN_BYTES = 64 * 1024 * 1024;

/** Reads a body to its end and drops it; false when it runs past maxBytes or timeoutMs. */
async function discard(body: ReadableStream<Uint8Array>, maxBytes: number, timeoutMs: number): Promise<boolean> {
  const reader = body.getReader();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), timeoutMs)));
  let n = 0;
  try {
    for (;;) {
      const chunk = await Promise.race([reader.read(), late]);
      if (chunk === 'late') return false; // a client that stops sending is not waited for
      if (chunk.done) return true;
      n += chunk.value.length;
      if (n > maxBytes) return false;
    }
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    void reader.cancel().catch(() => undefined);
  }
}

/** Bodies over this size are read under ServiceContext.uploadQueue. */
const LARGE_BODY_BYTES = 1024 * 1024;

/** The name of the bearer-token security scheme in the OpenAPI document. */
const BEARER = 'bearerAuth';

const PUBLIC_PATHS = new Set(['/', '/healthz', '/readyz', '/openapi.json', '/docs', '/favicon.ico']);
const PAGE_CSP = pageCsp(WEB_PAGE_HTML);

/** The Hono app over the operation table. One app per service context. */
export function createApp(ctx: ServiceContext, opts: HttpOptions = {}): OpenAPIHono {
  const app = new OpenAPIHono();
  const log = opts.logger;
  // in this order: what a request must get past before any route sees it
  app.use('*', requestId());
  app.use('*', securityHeaders);
  app.use('*', refuseForeignHosts(ctx)); // DNS rebinding and cross-site requests, before anything else runs
  app.use('*', accessLog(ctx, log));
  if (ctx.config.PROMPTSEG_CORS_ORIGINS.length) {
    app.use('*', cors({ origin: ctx.config.PROMPTSEG_CORS_ORIGINS, allowHeaders: ['authorization', 'content-type', 'mcp-session-id', 'mcp-protocol-version'], exposeHeaders: ['mcp-session-id', 'x-request-id'] }));
  }
  app.use('*', refuseWhileDraining(ctx));
  if (ctx.config.PROMPTSEG_API_TOKENS.length) app.use('*', bearerAuth(ctx));
  app.use('*', bodyLimits(ctx));

  for (const op of OPERATIONS) registerOperation(app, ctx, op);
  registerServiceRoutes(app, ctx);
  registerFileRoutes(app, ctx);
  registerDocuments(app, ctx);
  opts.mount?.(app, ctx);

  app.notFound((c) =>
    new Response(JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: `no route ${c.req.method} ${c.req.path}` }), {
      status: 404,
      headers: { 'content-type': 'application/problem+json' },
    }),
  );
  app.onError((e, c) => {
    log?.error({ reqId: c.get('requestId'), err: e.message }, 'unhandled error');
    return problem(c, { kind: 'internal', message: 'an internal error occurred; it has been logged' });
  });
  return app;
}

/** Refuses a request whose Host or Origin the server does not answer to (DNS rebinding, cross-site requests); /mcp gets a JSON-RPC error. */
function refuseForeignHosts(ctx: ServiceContext): MiddlewareHandler {
  const hosts = hostPolicy(ctx.config);
  return async (c, next) => {
    const why = refusedBecause(ctx.config, hosts, c.req.header('host'), c.req.header('origin'));
    if (!why) return next();
    count(ctx, 'http_refused_host_or_origin');
    if (c.req.path === '/mcp') return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: why }, id: null }), { status: 403, headers: { 'content-type': 'application/json' } });
    return problem(c, { kind: 'forbidden', message: why });
  };
}

/** Counts every response by status and logs it with its request id and time. */
function accessLog(ctx: ServiceContext, log: Logger | undefined): MiddlewareHandler {
  return async (c, next) => {
    const t0 = performance.now();
    await next();
    count(ctx, `http_responses_${c.res.status}`);
    log?.info({ reqId: c.get('requestId'), method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - t0) }, 'request');
  };
}

/** While the server shuts down, everything but /healthz is answered 503. */
function refuseWhileDraining(ctx: ServiceContext): MiddlewareHandler {
  return async (c, next) => {
    if (ctx.draining && c.req.path !== '/healthz') return problem(c, { kind: 'overloaded', message: 'the server is shutting down' });
    return next();
  };
}

/** Every path but the public ones (and /metrics when it is public) needs one of the configured tokens, compared in constant time. */
function bearerAuth(ctx: ServiceContext): MiddlewareHandler {
  const tokens = ctx.config.PROMPTSEG_API_TOKENS.map((t) => Buffer.from(t));
  return async (c, next) => {
    if (PUBLIC_PATHS.has(c.req.path) || (c.req.path === '/metrics' && ctx.config.PROMPTSEG_PUBLIC_METRICS)) return next();
    const m = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '');
    const given = m ? Buffer.from(m[1].trim()) : undefined;
    const valid = given !== undefined && tokens.some((t) => t.length === given.length && timingSafeEqual(t, given));
    if (!valid) return problem(c, { kind: 'unauthorized', message: m ? 'the bearer token is not valid' : 'this server needs an Authorization: Bearer <token> header' });
    return next();
  };
}

/** The body limit: PROMPTSEG_MAX_BODY_BYTES, and on /mcp the encoded size of an image at the limit (MCP messages carry images as base64). */
function bodyLimits(ctx: ServiceContext): MiddlewareHandler {
  const limitFor = (max: number) =>
    bodyLimit({
      maxSize: max,
      // a body at most 64 MiB over the limit is read and dropped first, so that a client still
      // sending reads this answer (not a broken pipe) and its connection stays usable; a larger
      // one, or one already being read, gets the answer with the connection closed
      onError: async (c) => {
        const res = problem(c, { kind: 'too_large', message: `the request body is over ${max} bytes` });
        const body = c.req.raw.body;
        const declared = Number(c.req.header('content-length') ?? NaN);
        if (body && !body.locked && declared <= max + DRAIN_BYTES && (await discard(body, DRAIN_BYTES, 10_000))) return res;
        res.headers.set('connection', 'close');
        return res;
      },
    });
  const apiLimit = limitFor(ctx.config.PROMPTSEG_MAX_BODY_BYTES);
  const mcpLimit = limitFor(mcpMessageLimit(ctx.config));
  return (c, next) => (c.req.path === '/mcp' ? mcpLimit(c, next) : apiLimit(c, next));
}

/** Readiness and Prometheus metrics. */
function registerServiceRoutes(app: OpenAPIHono, ctx: ServiceContext): void {
  app.get('/readyz', (c) => {
    const id = ctx.pipeline.registry.defaultId;
    const ready = ctx.pipeline.registry.loadedIds().includes(id) && !ctx.draining;
    return c.json({ ready, default_model: id, models_loaded: ctx.pipeline.registry.loadedIds() }, ready ? 200 : 503);
  });
  app.get('/metrics', (c) => c.text(renderMetrics(ctx), 200, { 'content-type': 'text/plain; version=0.0.4' }));
}

/** A file route's answer: the artifact's bytes with its type and the given headers, or the error as problem+json. */
function fileResponse(c: Context, r: Result<{ bytes: Uint8Array | Buffer; mimeType: string }>, headers: Record<string, string>): Response {
  if (!r.ok) return problem(c, r.error);
  return new Response(new Uint8Array(r.value.bytes), { status: 200, headers: { 'content-type': r.value.mimeType, ...headers } });
}

/** The artifacts of a result or volume, made when fetched: DICOM SEG, mask and map PNGs, slice previews, NIfTI masks. */
function registerFileRoutes(app: OpenAPIHono, ctx: ServiceContext): void {
  const download = (name: string) => ({ 'content-disposition': `attachment; filename="${name}"` });
  const cached = { 'cache-control': 'private, max-age=600' };
  /** The index in a file name such as 3.png, or a 400 saying what was expected. */
  const indexIn = (c: Context, pattern: RegExp, expected: string): number | Response => {
    const m = pattern.exec(c.req.param('file') ?? '');
    return m ? Number(m[1]) : problem(c, { kind: 'invalid_argument', message: `expected ${expected}`, field: 'file' });
  };
  app.get('/v1/results/:id/dicom-seg', async (c) => fileResponse(c, await getDicomSeg(ctx, c.req.param('id'), c.req.query('anonymize') === 'true'), download('seg.dcm')));
  app.get('/v1/results/:id/:kind/:file', async (c) => {
    const i = indexIn(c, /^(\d+)\.png$/, '<index>.png');
    return typeof i === 'number' ? fileResponse(c, await getResultArtifact(ctx, c.req.param('id'), c.req.param('kind'), i), cached) : i;
  });
  app.get('/v1/volumes/:id/dicom-seg', async (c) => fileResponse(c, await getVolumeDicomSeg(ctx, c.req.param('id'), c.req.query('anonymize') === 'true'), download('seg.dcm')));
  app.get('/v1/volumes/:id/previews/:file', async (c) => {
    const i = indexIn(c, /^(\d+)\.png$/, '<slice index>.png');
    return typeof i === 'number' ? fileResponse(c, await getVolumePreview(ctx, c.req.param('id'), i), cached) : i;
  });
  app.get('/v1/volumes/:id/masks/:file', async (c) => {
    const i = indexIn(c, /^(\d+)\.nii\.gz$/, '<index>.nii.gz');
    return typeof i === 'number' ? fileResponse(c, await getVolumeMask(ctx, c.req.param('id'), i), download(`mask-${i}.nii.gz`)) : i;
  });
}

/** The OpenAPI document (its server: the origin it was fetched from), the API docs page and the web page. */
function registerDocuments(app: OpenAPIHono, ctx: ServiceContext): void {
  app.openAPIRegistry.registerComponent('securitySchemes', BEARER, { type: 'http', scheme: 'bearer', description: 'A token from PROMPTSEG_API_TOKENS, as `Authorization: Bearer <token>`; needed when the server has tokens.' });
  app.doc31('/openapi.json', (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'promptseg',
      version: ctx.version,
      description: 'Text-prompted medical image segmentation with trust scores. Research use only; not for clinical decisions.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    // the origin this document was fetched from: a generated client talks to the server that served it
    servers: [{ url: new URL(c.req.url).origin, description: 'this promptseg server' }],
  }));
  app.get('/docs', (c) => {
    const html = renderDocsPage(app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 'promptseg', version: ctx.version } }) as unknown as Record<string, unknown>);
    return c.html(html, 200, { 'content-security-policy': pageCsp(html) });
  });
  app.get('/', (c) => c.html(WEB_PAGE_HTML, 200, { 'content-security-policy': PAGE_CSP }));
}

/** The operation's entry in the OpenAPI document: request from its zod input, responses from its output and the problem kinds, and its security. */
function documentOperation(app: OpenAPIHono, ctx: ServiceContext, op: Operation): void {
  const openapiPath = op.http.path;
  const errorResponses = {
    400: { description: 'Bad input', content: { 'application/problem+json': { schema: ProblemSchema } } },
    404: { description: 'Unknown model or structure', content: { 'application/problem+json': { schema: ProblemSchema } } },
    413: { description: 'Too large', content: { 'application/problem+json': { schema: ProblemSchema } } },
    415: { description: 'Unsupported format', content: { 'application/problem+json': { schema: ProblemSchema } } },
    422: { description: 'Invalid argument', content: { 'application/problem+json': { schema: ProblemSchema } } },
    503: { description: 'Overloaded or model unavailable (Retry-After)', content: { 'application/problem+json': { schema: ProblemSchema } } },
  };
  const params = op.http.pathParams ?? [];
  const shape = op.input.shape as Record<string, z.ZodType>;
  const request =
    op.http.method === 'post'
      ? {
          body: {
            required: true,
            content: {
              'application/json': { schema: op.input },
              ...(op.name === 'segment' ? { 'multipart/form-data': { schema: MultipartSegmentSchema } } : {}),
              ...(op.name === 'segment_volume' ? { 'multipart/form-data': { schema: MultipartVolumeSchema } } : {}),
            },
          },
        }
      : {
          ...(params.length ? { params: z.object(Object.fromEntries(params.map((p) => [p, shape[p]]))) } : {}),
          ...(Object.keys(shape).some((k) => !params.includes(k))
            ? { query: z.object(Object.fromEntries(Object.entries(shape).filter(([k]) => !params.includes(k)))) }
            : {}),
        };
  // public routes say so; the others take the bearer token (required when the server has tokens, optional otherwise)
  const isPublic = PUBLIC_PATHS.has(openapiPath);
  const tokens = ctx.config.PROMPTSEG_API_TOKENS.length > 0;
  app.openAPIRegistry.registerPath({
    method: op.http.method,
    path: openapiPath,
    operationId: op.name,
    summary: op.title,
    description: op.description,
    request,
    security: isPublic ? [] : tokens ? [{ [BEARER]: [] }] : [{ [BEARER]: [] }, {}],
    responses: {
      200: { description: 'OK', content: { 'application/json': { schema: op.output } } },
      ...errorResponses,
      ...(isPublic ? {} : { 401: { description: 'Missing or wrong bearer token (when the server has tokens)', content: { 'application/problem+json': { schema: ProblemSchema } } } }),
      403: { description: 'Host or Origin not allowed', content: { 'application/problem+json': { schema: ProblemSchema } } },
      504: { description: 'Deadline exceeded', content: { 'application/problem+json': { schema: ProblemSchema } } },
    },
  });
}

/** One operation as an OpenAPI path (its zod input as the body or the query and path parameters) and a Hono route that runs it. */
function registerOperation(app: OpenAPIHono, ctx: ServiceContext, op: Operation): void {
  documentOperation(app, ctx, op);
  const params = op.http.pathParams ?? [];
  const honoPath = op.http.path.replace(/\{(\w+)\}/g, ':$1');
  const handler = async (c: Context) => {
    const signal = c.req.raw.signal; // read now: the node adapter aborts it when the client disconnects
    // a large body (an image upload) is read only when one of a few slots is free and holds it to
    // the end: waiting bodies stay unread in their sockets instead of each becoming copies in memory
    const large = Number(c.req.header('content-length') ?? Infinity) > LARGE_BODY_BYTES;
    if (op.http.method === 'post' && large) {
      try {
        return await ctx.uploadQueue.run(() => handle(c, signal), ctx.config.PROMPTSEG_REQUEST_TIMEOUT_MS);
      } catch (e) {
        const ae = (e as { error?: AppError }).error;
        if (ae) return problem(c, ae);
        throw e;
      }
    }
    return handle(c, signal);
  };
  const handle = async (c: Context, signal: AbortSignal) => {
    let input: unknown;
    let upload: Uint8Array | undefined;
    let uploads: { name: string; bytes: Uint8Array }[] | undefined;
    if (op.http.method === 'post') {
      const parsed = await readBody(c, op, ctx.config.PROMPTSEG_MAX_PROMPTS, ctx.config.PROMPTSEG_MAX_BODY_BYTES);
      if (!parsed.ok) return problem(c, parsed.error);
      input = parsed.value;
      upload = parsed.upload;
      uploads = parsed.uploads?.map((f, i) => ({ name: f.filename || `file-${i + 1}`, bytes: f.bytes }));
    } else {
      input = { ...c.req.query(), ...Object.fromEntries(params.map((p) => [p, c.req.param(p)])) };
    }
    const r = await runOperation(ctx, op, input, { via: 'http', principal: principalOf(c.req.header('authorization')), signal, upload, uploads });
    if (!r.ok) return problem(c, r.error);
    return c.json(r.value as object, 200);
  };
  if (op.http.method === 'post') app.post(honoPath, handler);
  else if (op.http.method === 'delete') app.delete(honoPath, handler);
  else app.get(honoPath, handler);
}

async function readBody(c: Context, op: Operation, maxPrompts: number, maxFileBytes: number): Promise<{ ok: true; value: unknown; upload?: Uint8Array; uploads?: { filename: string; bytes: Uint8Array }[] } | ReturnType<typeof err>> {
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  if (type.startsWith('application/json')) {
    const text = await c.req.text();
    if (!text.trim()) return err('bad_input', 'the request body is empty; send a JSON object');
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch {
      return err('bad_input', 'the request body is not valid JSON');
    }
  }
  const multipart = op.name === 'segment' || op.name === 'segment_volume';
  if (type.startsWith('multipart/form-data') && multipart) {
    try {
      const form = await readMultipartForm(c.req.raw, { maxFileBytes, maxPrompts, maxFiles: op.name === 'segment_volume' ? 2048 : 4 });
      const { input, upload, uploads }: ReturnType<typeof multipartToVolumeInput> = op.name === 'segment' ? multipartToSegmentInput(form, maxPrompts) : multipartToVolumeInput(form, maxPrompts);
      return { ok: true, value: input, upload, uploads };
    } catch (e) {
      const ae = (e as { error?: { kind: string } }).error;
      if (ae) return { ok: false, error: ae as never };
      return err('bad_input', 'the multipart body could not be parsed');
    }
  }
  if (!type) return err('unsupported_format', `send Content-Type application/json${multipart ? ' or multipart/form-data' : ''}`, 'content-type');
  return err('unsupported_format', `Content-Type ${type.split(';')[0]} is not accepted here; send application/json${multipart ? ' or multipart/form-data' : ''}`, 'content-type');
}

const ProblemSchema = z.object({
  type: z.string().describe(`A stable URI per error kind, e.g. ${problemType('bad_input')}`),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  field: z.string().optional(),
  request_id: z.string().optional(),
});

const MultipartVolumeSchema = z.object({
  image: z.any().describe('A .nii or .nii.gz volume, a zip archive of one DICOM series, or the series\' DICOM files themselves (repeat the field once per file).'),
  prompt: z.array(z.string()).describe('Repeat the field once per prompt.'),
  previews: z.string().optional().describe('true to keep a preview PNG of every slice (previews_url).'),
  axis: z.string().optional().describe('0, 1 or 2 (default 2).'),
  slice_range: z.string().optional().describe('"first,last" slice indices, inclusive.'),
  model: z.string().optional(),
  threshold: z.string().optional(),
});

const MultipartSegmentSchema = z.object({
  image: z.any().describe('The image file (binary).'),
  prompt: z.array(z.string()).describe('Repeat the field once per prompt.'),
  model: z.string().optional(),
  threshold: z.string().optional(),
  outputs: z.string().optional().describe('Comma list of png, rle, polygons.'),
  overlay: z.string().optional().describe('true to include an overlay preview.'),
  pixel_spacing_mm: z.string().optional().describe('"row,col" in mm.'),
});
