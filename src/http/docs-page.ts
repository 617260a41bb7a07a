/** A self-contained API reference page rendered from the OpenAPI document (no CDN assets). */
export function renderDocsPage(doc: Record<string, unknown>): string {
  const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);
  const paths = (doc.paths ?? {}) as Record<string, Record<string, { operationId?: string; summary?: string; description?: string; requestBody?: unknown; parameters?: unknown }>>;
  const rows: string[] = [];
  for (const [p, methods] of Object.entries(paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const req = op.requestBody ?? op.parameters;
      rows.push(`<section><h2><code>${m.toUpperCase()} ${esc(p)}</code> <small>${esc(op.operationId ?? '')}</small></h2><p><b>${esc(op.summary ?? '')}</b></p><p>${esc(op.description ?? '')}</p>${req ? `<details><summary>request schema</summary><pre>${esc(JSON.stringify(req, null, 1))}</pre></details>` : ''}</section>`);
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>promptseg API</title><style>body{font:15px system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;padding:.5rem;overflow:auto;max-height:24rem}small{color:#666}</style></head><body><h1>promptseg API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Errors are <code>application/problem+json</code> with a stable <code>type</code> per error kind.</p>${rows.join('\n')}</body></html>`;
}
