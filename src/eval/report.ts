import type { CaseRecord, Summary } from './run-eval.js';

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(d));
const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);

export interface ReportMeta {
  suite: string;
  split: string;
  models: { id: string; files: Record<string, { sha256?: string }> }[];
  commit: string;
  machine: string;
  started: string;
  seconds: number;
  limit: number | null;
}

/** Markdown tables of every aggregate. */
export function renderMarkdown(s: Summary, meta: ReportMeta): string {
  const out: string[] = [];
  out.push(`# promptseg evaluation: ${meta.suite} (${meta.split} split)`, '');
  out.push(`Models: ${meta.models.map((m) => m.id).join(', ')}. Commit ${meta.commit}. Machine: ${meta.machine}. ${meta.limit ? `Limited to ${meta.limit} cases per dataset. ` : ''}Run took ${meta.seconds.toFixed(0)} s.`, '');
  out.push('## Dice on cases where the structure is present', '', 'HD95 and NSD are in mm where the images carry their spacing (DICOM, NIfTI), else in pixels. "Mask threshold" is the pixel probability the masks were drawn at: the suite\'s `threshold`, or where it names none each structure\'s threshold fitted on val (0.5 without one). "Target" is the suite\'s Dice bar (`dice_targets`).', '', '| model | dataset | structure | n | Dice | 95% CI | IoU | HD95 median | NSD | eval-only Dice | delta | mask threshold | target |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const target = (r: Summary['structures'][number]) => (r.dice_target === null ? '–' : `${f(r.dice_target, 2)} ${r.target_met ? 'met' : 'not met'}`);
  for (const r of s.structures) out.push(`| ${r.model} | ${r.dataset} | ${r.structure} | ${r.n} | ${f(r.dice)} | ${f(r.dice_ci[0])}–${f(r.dice_ci[1])} | ${f(r.iou)} | ${f(r.hd95_median_px, 1)} | ${f(r.nsd)} | ${f(r.eval_only_dice)} | ${f(r.eval_only_delta)} | ${f(r.mask_threshold, 2)} | ${target(r)} |`);
  for (const m of [...new Set(s.structures.map((r) => r.model))]) {
    const withTarget = s.structures.filter((r) => r.model === m && r.dice_target !== null);
    if (!withTarget.length) continue;
    const missed = withTarget.filter((r) => !r.target_met).map((r) => `${r.dataset}/${r.structure}`);
    out.push('', `${m}: Dice targets met ${withTarget.length - missed.length} of ${withTarget.length}${missed.length ? ` (not met: ${missed.join(', ')})` : ''}.`);
  }
  if (s.targets_not_evaluated.length) out.push('', `Dice targets not evaluated in this run (no such dataset/structure among its cases): ${s.targets_not_evaluated.join(', ')}.`);
  out.push('', '## Mean Dice per dataset and per modality (present cases, canonical prompts)', '', '| model | group | n | Dice | 95% CI |', '|---|---|---|---|---|');
  for (const r of s.by_dataset) out.push(`| ${r.model} | ${r.dataset} | ${r.n} | ${f(r.dice)} | ${f(r.dice_ci[0])}–${f(r.dice_ci[1])} |`);
  for (const r of s.by_modality) out.push(`| ${r.model} | modality: ${r.modality} | ${r.n} | ${f(r.dice)} | ${f(r.dice_ci[0])}–${f(r.dice_ci[1])} |`);
  out.push('', '## Presence (present vs absent structures, empty in-dataset masks and nonsense prompts)', '', '| model | AUROC | accuracy | absent -> empty mask | nonsense -> empty mask | empty in-dataset -> empty mask | all of these -> empty mask | present -> mask | n pos | n neg |', '|---|---|---|---|---|---|---|---|---|---|');
  for (const [m, p] of Object.entries(s.presence)) out.push(`| ${m} | ${f(p.auroc, 4)} | ${f(p.accuracy)} | ${f(p.absent_empty_rate)} | ${f(p.nonsense_empty_rate)} | ${f(p.in_dataset_empty_rate)} | ${f(p.all_negatives_empty_rate)} | ${f(p.present_mask_rate)} | ${p.n_pos} | ${p.n_neg} |`);
  out.push('', '## Prompt robustness (canonical names vs evaluation-only phrasings)', '', '| model | canonical Dice | eval-only Dice | delta | mean per-case spread |', '|---|---|---|---|---|');
  for (const [m, r] of Object.entries(s.robustness)) out.push(`| ${m} | ${f(r.canonical_dice)} | ${f(r.eval_only_dice)} | ${f(r.delta)} | ${f(r.mean_spread)} |`);
  out.push('', '## Calibration and trust', '', '| model | pixel ECE before calibration | pixel ECE as served | failure AUROC (Dice < 0.7, by predicted quality) | failures / n | present -> accept or review | negatives -> reject | test images flagged out-of-distribution | non-medical images made by code flagged |', '|---|---|---|---|---|---|---|---|---|');
  for (const m of Object.keys(s.trust)) {
    const t = s.trust[m];
    const o = s.ood[m];
    out.push(`| ${m} | ${f(s.calibration[m]?.ece_uncalibrated, 4)} | ${f(s.calibration[m]?.ece, 4)} | ${f(t.failure_auroc)} | ${t.failures} / ${t.n} | ${f(t.verdicts.present_accept_or_review)} | ${f(t.verdicts.negatives_rejected)} | ${o ? `${o.flagged} / ${o.images}${o.worst_dataset ? ` (most in one dataset: ${o.worst_dataset.flagged} / ${o.worst_dataset.images}, ${o.worst_dataset.dataset})` : ''}` : '–'} | ${o?.probe ? `${o.probe.flagged} / ${o.probe.images} (${Object.entries(o.probe.by_kind).map(([k, v]) => `${k} ${v.flagged}/${v.images}`).join(', ')})` : '–'} |`);
  }
  const conf = Object.entries(s.conformal).filter(([, v]) => Object.keys(v).length);
  if (conf.length) {
    out.push('', '## Conformal masks (thresholds fitted per structure on val; recall of the true structure on this split)', '', '| model | nominal recall | measured mean recall | n |', '|---|---|---|---|');
    for (const [m, levels] of conf) for (const [, v] of Object.entries(levels)) out.push(`| ${m} | ${f(v.nominal, 2)} | ${f(v.mean_recall)} | ${v.n} |`);
  }
  if (s.paired.length) {
    out.push('', '## Paired differences (second model minus first, canonical Dice)', '', '| structure | n | mean difference | 95% CI |', '|---|---|---|---|');
    for (const p of s.paired) out.push(`| ${p.structure} | ${p.n} | ${f(p.mean_difference)} | ${f(p.ci[0])}–${f(p.ci[1])} |`);
  }
  out.push('', '## Latency per image (all prompts of the case, through the service API)', '', '| model | p50 ms | p95 ms |', '|---|---|---|');
  for (const [m, l] of Object.entries(s.latency_ms)) out.push(`| ${m} | ${f(l.p50, 0)} | ${f(l.p95, 0)} |`);
  return out.join('\n') + '\n';
}

function stripPlot(s: Summary, records: CaseRecord[]): string {
  const rows = s.structures;
  const W = 760, rowH = 18, left = 300, H = rows.length * rowH + 40;
  const x = (v: number) => left + v * (W - left - 20);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`];
  for (let t = 0; t <= 10; t += 2) parts.push(`<line x1="${x(t / 10)}" y1="10" x2="${x(t / 10)}" y2="${H - 20}" stroke="#ddd"/><text x="${x(t / 10)}" y="${H - 5}" text-anchor="middle">${(t / 10).toFixed(1)}</text>`);
  rows.forEach((r, i) => {
    const y = 20 + i * rowH;
    parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${esc(`${r.model === rows[0].model ? '' : r.model + ' '}${r.dataset}/${r.structure}`)}</text>`);
    const ds = records.filter((c) => c.model === r.model && c.dataset === r.dataset && c.structure === r.structure && c.set === 'canonical' && c.dice !== null);
    for (const c of ds) {
      const jitter = Math.sin(c.case.length * 7.3 + c.dice! * 50) * 4;
      parts.push(`<circle cx="${x(c.dice!).toFixed(1)}" cy="${(y + jitter).toFixed(1)}" r="2" fill="#2b6cb0" fill-opacity="0.35"/>`);
    }
    parts.push(`<line x1="${x(r.dice_ci[0])}" y1="${y}" x2="${x(r.dice_ci[1])}" y2="${y}" stroke="#c00" stroke-width="2"/><circle cx="${x(r.dice)}" cy="${y}" r="3.5" fill="#c00"/>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function linePlot(points: { x: number; y: number }[], xLabel: string, yLabel: string, diagonal: boolean): string {
  const W = 320, H = 280, m = 40;
  const sx = (v: number) => m + v * (W - m - 10), sy = (v: number) => H - m - v * (H - m - 10);
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11"><rect x="${m}" y="10" width="${W - m - 10}" height="${H - m - 10}" fill="none" stroke="#999"/>${diagonal ? `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${sy(1)}" stroke="#bbb" stroke-dasharray="4"/>` : ''}<path d="${path}" fill="none" stroke="#2b6cb0" stroke-width="2"/>${points.map((p) => `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="2.5" fill="#2b6cb0"/>`).join('')}<text x="${W / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text><text x="12" y="${H / 2}" transform="rotate(-90 12 ${H / 2})" text-anchor="middle">${esc(yLabel)}</text><text x="${m}" y="${H - m + 14}">0</text><text x="${W - 16}" y="${H - m + 14}">1</text></svg>`;
}

/** A self-contained HTML report: the tables plus SVG plots, no network needed to view it. */
export function renderHtml(s: Summary, records: CaseRecord[], meta: ReportMeta, markdown: string, gallery: Map<CaseRecord, string> = new Map()): string {
  const html: string[] = [];
  let inTable = false;
  for (const l of markdown.split('\n')) {
    const isRow = l.startsWith('|');
    if (inTable && !isRow) {
      html.push('</table>');
      inTable = false;
    }
    if (l.startsWith('|---')) continue;
    if (isRow) {
      if (!inTable) html.push('<table>');
      inTable = true;
      html.push(`<tr>${l.split('|').slice(1, -1).map((c) => `<td>${esc(c.trim())}</td>`).join('')}</tr>`);
    } else if (l.startsWith('## ')) html.push(`<h2>${esc(l.slice(3))}</h2>`);
    else if (l.startsWith('# ')) html.push(`<h1>${esc(l.slice(2))}</h1>`);
    else if (l) html.push(`<p>${esc(l)}</p>`);
  }
  if (inTable) html.push('</table>');
  const tables = html.join('\n');
  const plots: string[] = [`<h2>Dice per structure (dots: cases; red: mean and bootstrap 95% CI)</h2>${stripPlot(s, records)}`];
  for (const [m, c] of Object.entries(s.calibration)) {
    plots.push(`<h3>${esc(m)}: reliability diagram (pixel probability vs observed frequency), ECE ${c.ece.toFixed(4)}</h3>${linePlot(c.table.filter((b) => b.count > 0).map((b) => ({ x: b.meanConfidence, y: b.accuracy })), 'mean predicted probability', 'observed frequency', true)}`);
  }
  for (const [m, t] of Object.entries(s.trust)) {
    plots.push(`<h3>${esc(m)}: risk-coverage (results kept in order of predicted quality)</h3>${linePlot(t.risk_coverage.map((p) => ({ x: p.coverage, y: p.risk })), 'coverage', 'risk (share with Dice < 0.7)', false)}`);
  }
  const worst = records.filter((r) => r.set === 'canonical' && r.dice !== null).sort((a, b) => a.dice! - b.dice!).slice(0, 12);
  const galleryHtml = `<h2>Worst cases (red: ground truth, blue: prediction)</h2><table><tr><td>overlay</td><td>model</td><td>dataset</td><td>case</td><td>structure</td><td>Dice</td><td>presence</td><td>verdict</td></tr>${worst.map((r) => `<tr><td>${gallery.has(r) ? `<img src="${gallery.get(r)}" alt="${esc(r.case)}">` : ''}</td><td>${esc(r.model)}</td><td>${esc(r.dataset)}</td><td>${esc(r.case)}</td><td>${esc(r.structure ?? '')}</td><td>${r.dice!.toFixed(3)}</td><td>${r.presence.toFixed(3)}</td><td>${r.verdict}</td></tr>`).join('')}</table>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>promptseg evaluation ${esc(meta.suite)}</title><style>body{font:14px system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;margin:.5rem 0 1rem}td{border:1px solid #ddd;padding:.2rem .45rem}tr:first-child td{background:#f3f3f3;font-weight:600}</style></head><body>${tables}${plots.join('\n')}${galleryHtml}</body></html>`;
}
