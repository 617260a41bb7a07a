import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { decodeImage } from '../core/image/decode.js';
import { segment } from '../core/pipeline/segment.js';
import type { ServiceContext } from '../service/context.js';
import { caseImagePath, readCaseMask, readSplits } from './dataset-layout.js';
import { bootstrapCi, dice, mean } from './metrics.js';

/**
 * Generic words against canonical names: on every test case of the datasets with an abnormal
 * finding, the finding asked by its canonical name and by each generic word (lesion, tumour...),
 * which the service reads by what the image is (core/pipeline/generic-words.ts). Dice per dataset
 * and word, the share of cases read as the right structure, and the bar: within `max_drop` of the
 * canonical name's Dice.
 */
export const GenericWordsSuiteSchema = z.object({
  name: z.string(),
  description: z.string().default(''),
  protocol: z.literal('generic-words'),
  data_root: z.string(),
  split: z.enum(['train', 'val', 'test']).default('test'),
  datasets: z.array(z.object({ id: z.string(), structure: z.string() })),
  words: z.array(z.string()).min(1),
  max_drop: z.number().default(0.03),
});

interface Row {
  dataset: string;
  structure: string;
  cases: number;
  canonical: { prompt: string; dice: number; ci: [number, number] };
  words: { word: string; dice: number; ci: [number, number]; read_as_structure: number; drop: number; met: boolean }[];
}

export async function evaluateGenericWords(ctx: ServiceContext, suiteFile: string, outDir: string, progress?: (msg: string) => void): Promise<{ files: string[] }> {
  const suite = GenericWordsSuiteSchema.parse(JSON.parse(readFileSync(suiteFile, 'utf8')));
  const root = path.resolve(path.dirname(suiteFile), suite.data_root);
  const rows: Row[] = [];
  for (const d of suite.datasets) {
    const cases = readSplits(root, d.id)[suite.split];
    const name = ctx.pipeline.vocabulary.bySlug.get(d.structure)?.name ?? d.structure;
    const prompts = [name, ...suite.words];
    const scores = prompts.map(() => [] as number[]);
    const right = suite.words.map(() => 0);
    let n = 0;
    for (const c of cases) {
      const gt = await readCaseMask(root, d.id, d.structure, c);
      if (!gt.some((v) => v)) continue;
      const image = await decodeImage(readFileSync(caseImagePath(root, d.id, c)), { maxPixels: ctx.config.PROMPTSEG_MAX_PIXELS });
      const res = await segment(ctx.pipeline, { image, prompts });
      res.results.forEach((r, i) => scores[i].push(dice(r.mask, gt)));
      res.results.slice(1).forEach((r, i) => (right[i] += r.resolution?.structure === d.structure ? 1 : 0));
      n++;
    }
    const canonical = { prompt: name, dice: mean(scores[0]), ci: bootstrapCi(scores[0]) };
    const words = suite.words.map((word, i) => {
      const dd = mean(scores[i + 1]);
      return { word, dice: dd, ci: bootstrapCi(scores[i + 1]), read_as_structure: right[i] / Math.max(1, n), drop: canonical.dice - dd, met: canonical.dice - dd <= suite.max_drop };
    });
    rows.push({ dataset: d.id, structure: d.structure, cases: n, canonical, words });
    progress?.(`${d.id}: ${name} ${canonical.dice.toFixed(3)}; ${words.map((w) => `${w.word} ${w.dice.toFixed(3)}`).join(', ')}`);
  }
  mkdirSync(outDir, { recursive: true });
  const f3 = (v: number) => v.toFixed(3);
  const lines = [`# ${suite.name}`, '', suite.description, '', `Split ${suite.split}, present cases. "read as" is the share of cases on which the word was read as the dataset's finding. Bar: within ${suite.max_drop} Dice of the canonical name.`, '', '| dataset / finding | n | canonical name | Dice | word | Dice | 95% CI | read as | drop | bar |', '|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) for (const [i, w] of r.words.entries()) lines.push(`| ${i ? '' : `${r.dataset} / ${r.structure}`} | ${i ? '' : r.cases} | ${i ? '' : `"${r.canonical.prompt}"`} | ${i ? '' : f3(r.canonical.dice)} | "${w.word}" | ${f3(w.dice)} | ${f3(w.ci[0])}–${f3(w.ci[1])} | ${(100 * w.read_as_structure).toFixed(0)}% | ${f3(w.drop)} | ${w.met ? 'met' : 'not met'} |`);
  const met = rows.flatMap((r) => r.words).filter((w) => w.met).length, all = rows.flatMap((r) => r.words).length;
  lines.push('', `${met} of ${all} dataset-word pairs within the bar.`);
  const files = [path.join(outDir, 'results.json'), path.join(outDir, 'report.md')];
  writeFileSync(files[0], JSON.stringify({ suite, rows }, null, 1));
  writeFileSync(files[1], lines.join('\n') + '\n');
  return { files };
}
