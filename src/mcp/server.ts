import { readFileSync } from 'node:fs';
import path from 'node:path';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { PROJECT_ROOT } from '../config/env.js';
import type { ServiceContext } from '../service/context.js';
import { OPERATIONS } from '../service/operation-table.js';
import type { Operation } from '../service/operation.js';
import { runOperation } from '../service/run-operation.js';
import { recallImage } from '../service/resolve-image.js';
import { getDicomSeg, getResultArtifact, getVolumeDicomSeg, getVolumeMask } from '../service/result-artifacts.js';
import type { SegmentOutput } from '../service/schemas.js';
import { renderOverlay } from '../core/image/overlay.js';
import { err, type Result } from '../core/errors.js';

export const SERVER_INSTRUCTIONS = `promptseg segments structures in 2D medical images from text prompts and says how far to trust each mask.
- Use structure names from list_structures (or their synonyms); other prompts are flagged and nonsense is rejected.
- Always read each result's verdict: accept, review (check the reasons, call assess_segmentation) or reject (the structure is absent: there is no mask).
- Full-resolution masks, probability and uncertainty maps are resources (promptseg://results/...); tool results carry only a small preview.
- Pass image.image_id from an earlier result to prompt the same image again quickly.
- Research use only: never present results as a clinical diagnosis.`;

interface PromptTemplate {
  name: string;
  title: string;
  description: string;
  arguments: { name: string; description: string; required: boolean }[];
  template: string;
}

/** Fills {{name}} and {{#name}}...{{/name}} (kept only when the argument is given). */
export function fillTemplate(t: string, args: Record<string, string | undefined>): string {
  return t
    .replace(/\{\{#(\w+)\}\}([\s\S]*?)\{\{\/\1\}\}/g, (_, k: string, body: string) => (args[k] ? body : ''))
    .replace(/\{\{(\w+)\}\}/g, (_, k: string) => args[k] ?? '');
}

/** A fresh MCP server over the operation table; one per stdio process or HTTP session. */
export function createMcpServer(ctx: ServiceContext, caller: { principal?: string } = {}): McpServer {
  const server = new McpServer({ name: 'promptseg', version: ctx.version }, { instructions: SERVER_INSTRUCTIONS, capabilities: { logging: {} } });
  for (const op of OPERATIONS) registerTool(server, ctx, op, caller.principal);

  const blobResource = (name: string, template: string, title: string, description: string, mimeType: string, read: (vars: Record<string, unknown>) => Result<{ bytes: Buffer; mimeType: string }> | Promise<Result<{ bytes: Buffer; mimeType: string }>>) =>
    server.registerResource(name, new ResourceTemplate(template, { list: undefined }), { title, description, mimeType }, async (uri, vars) => {
      const r = await read(vars);
      if (!r.ok) throw new Error(r.error.message);
      return { contents: [{ uri: uri.href, mimeType: r.value.mimeType, blob: r.value.bytes.toString('base64') }] };
    });
  blobResource('result-image', 'promptseg://results/{id}/{kind}/{file}', 'Segmentation result images', 'Full-resolution mask, probability map or uncertainty map of one prompt of a result, as PNG.', 'image/png', (v) => {
    const m = /^(\d+)\.png$/.exec(String(v.file));
    return m ? getResultArtifact(ctx, String(v.id), String(v.kind), Number(m[1])) : err('invalid_argument', 'expected <index>.png');
  });
  blobResource('dicom-seg', 'promptseg://results/{id}/dicom-seg', 'DICOM Segmentation', 'A DICOM SEG of every mask of a result made from a DICOM image, referencing the source image.', 'application/dicom', (v) => getDicomSeg(ctx, String(v.id), false));
  blobResource('volume-dicom-seg', 'promptseg://volumes/{id}/dicom-seg', 'DICOM Segmentation of a series', 'A DICOM SEG of every mask of a segment_volume result made from a DICOM series, referencing each source instance.', 'application/dicom', (v) => getVolumeDicomSeg(ctx, String(v.id), false));
  blobResource('volume-mask', 'promptseg://volumes/{id}/masks/{file}', 'Volume masks', "A NIfTI-1 mask (.nii.gz) of one prompt of a segment_volume result, with the input volume's affine.", 'application/gzip', (v) => {
    const m = /^(\d+)\.nii\.gz$/.exec(String(v.file));
    return m ? getVolumeMask(ctx, String(v.id), Number(m[1])) : err('invalid_argument', 'expected <index>.nii.gz');
  });
  server.registerResource(
    'structure-vocabulary',
    'promptseg://vocabulary',
    { title: 'Structure vocabulary', description: 'Every structure the models know, with synonyms and modality.', mimeType: 'application/json' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(ctx.pipeline.vocabulary.data.structures, null, 1) }] }),
  );

  const templates = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'prompts', 'mcp-prompts.json'), 'utf8')) as { prompts: PromptTemplate[] }).prompts;
  for (const t of templates) {
    // structure-like arguments complete from the vocabulary, so agents pick names the model knows
    const names = [...new Set(ctx.pipeline.vocabulary.data.structures.flatMap((s) => [s.name, ...s.synonyms]))].sort();
    const complete = (v: string | undefined) => names.filter((n) => n.toLowerCase().startsWith((v ?? '').toLowerCase())).slice(0, 100);
    const shape = Object.fromEntries(
      t.arguments.map((a) => {
        const base = a.required ? z.string().describe(a.description) : z.string().optional().describe(a.description);
        return [a.name, a.name === 'structure' || a.name === 'finding' ? completable(base, complete) : base];
      }),
    );
    server.registerPrompt(t.name, { title: t.title, description: t.description, argsSchema: shape }, (args: Record<string, string | undefined>) => ({
      messages: [{ role: 'user', content: { type: 'text', text: fillTemplate(t.template, args) } }],
    }));
  }
  return server;
}

function registerTool(server: McpServer, ctx: ServiceContext, op: Operation, principal: string | undefined): void {
  const name = op.mcpName ?? op.name;
  server.registerTool(
    name,
    { title: op.title, description: op.description, inputSchema: op.input, outputSchema: op.output as z.ZodObject },
    async (args: unknown, extra): Promise<CallToolResult> => {
      const token = extra._meta?.progressToken;
      const progress = token === undefined ? undefined : (done: number, total: number, message?: string) => {
        void extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: done, total, ...(message ? { message } : {}) } });
      };
      const input = op.name === 'segment' ? { ...(args as object), overlay: false, outputs: [] } : args;
      const r = await runOperation(ctx, op, input, { via: 'mcp', progress, principal, signal: extra.signal });
      if (!r.ok) return { isError: true, content: [{ type: 'text', text: `${r.error.kind}: ${r.error.message}` }] };
      if (op.name === 'segment') return presentSegment(ctx, r.value as SegmentOutput, principal);
      return { content: [{ type: 'text', text: JSON.stringify(r.value, null, 1) }], structuredContent: r.value as Record<string, unknown> };
    },
  );
}

/** A short text summary, one small overlay preview, and the structured result; masks stay resources. */
async function presentSegment(ctx: ServiceContext, v: SegmentOutput, principal: string | undefined): Promise<CallToolResult> {
  const lines = v.results.map((r) => {
    const where = r.bbox ? ` bbox [${r.bbox.join(', ')}], area ${r.area_px} px${r.area_mm2 !== null ? ` (${r.area_mm2} mm²)` : ''}, ${r.components} part(s)` : '';
    const why = r.reasons.length ? ` Reasons: ${r.reasons.map((x) => x.message).join(' ')}` : '';
    return `- "${r.prompt}" -> ${r.verdict.toUpperCase()} (presence ${(r.presence * 100).toFixed(0)}%, predicted quality ${r.predicted_quality.toFixed(2)})${where}. Mask: ${r.mask_uri}.${why}`;
  });
  const text = `Segmented ${v.width}x${v.height} image (image_id ${v.image_id}) with ${v.model}:\n${lines.join('\n')}\n${v.disclaimer}`;
  const content: CallToolResult['content'] = [{ type: 'text', text }];
  const stored = ctx.results.get(v.result_id);
  const image = recallImage(ctx, principal, v.image_id);
  if (stored && image) {
    const png = await renderOverlay(image, stored.result.results.map((r) => r.mask), 384);
    content.push({ type: 'image', data: png.toString('base64'), mimeType: 'image/png' });
  }
  for (const r of v.results) {
    if (r.mask_produced) content.push({ type: 'resource_link', uri: r.mask_uri, name: `mask-${r.index}.png`, mimeType: 'image/png', description: `Mask for "${r.prompt}"` });
  }
  return { content, structuredContent: v as unknown as Record<string, unknown> };
}
