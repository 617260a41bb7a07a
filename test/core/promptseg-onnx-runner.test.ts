import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../src/core/models/registry.js';
import type { PromptsegOnnxRunner } from '../../src/core/models/promptseg-onnx-runner.js';
import { MODELS_DIR, readJson } from '../helpers/project.js';

interface Parity {
  prompts: string[];
  input_ids: number[][];
  attention_mask: number[][];
  sample_step: number;
  text_embeds: number[];
  pooled: number[];
  f5: number[];
  mask_logits: number[];
  presence_logit: number[];
  iou_logit: number[];
  similarity: number[];
  /** Per specialist (export.py --specialist): its encoder's pooled output and decoder's outputs on the same input. */
  specialists?: Record<string, { pooled: number[]; mask_logits: number[]; presence_logit: number[] }>;
}

/** The deterministic image export.py feeds PyTorch: three sine/cosine planes, normalised. */
function parityImage(size: number): Float32Array {
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = 0.5 + 0.5 * Math.sin(x * (0.05 + 0.01 * c)) * Math.cos(y * 0.03);
        out[c * size * size + y * size + x] = (v - 0.5) / 0.25;
      }
    }
  }
  return out;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('built-in model under onnxruntime-node', () => {
  const registry = new ModelRegistry(MODELS_DIR, 2);
  const model = registry.get('promptseg-builtin') as PromptsegOnnxRunner;
  const parity = readJson<Parity>(path.join(MODELS_DIR, 'promptseg-builtin', 'parity.json'));
  afterAll(() => registry.dispose());

  it('tokenises prompts to the same ids as the Python training tokenizer', async () => {
    const { ids } = await model.tokenize(parity.prompts);
    const expected = parity.input_ids.map((row, r) => row.filter((_, c) => parity.attention_mask[r][c] === 1));
    expect(ids).toEqual(expected);
  });

  it('matches PyTorch outputs on the export parity input within tolerance', async () => {
    const emb = await model.encodeText(parity.prompts);
    const flat = emb.flatMap((e) => Array.from(e));
    expect(maxAbsDiff(flat, parity.text_embeds)).toBeLessThan(1e-4);
    const feats = await model.encodePixels(parityImage(model.entry.input.size));
    expect(maxAbsDiff(feats.pooled, parity.pooled)).toBeLessThan(1e-3);
    const out = await model.decode(feats, emb);
    // the grid the manifest states (the full-resolution head: stride 1, one logit per input pixel)
    const side = model.entry.input.size / model.entry.input.mask_stride;
    expect(model.entry.input.mask_stride).toBe(1);
    expect([out.maskLogits[0].width, out.maskLogits[0].height]).toEqual([side, side]);
    const logits = out.maskLogits.flatMap((g) => Array.from(g.data));
    const sampled = logits.filter((_, i) => i % parity.sample_step === 0);
    expect(sampled.length).toBe(parity.mask_logits.length);
    expect(maxAbsDiff(sampled, parity.mask_logits)).toBeLessThan(2e-3);
    expect(maxAbsDiff(out.presenceLogit, parity.presence_logit)).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.iouLogit, parity.iou_logit)).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.similarity, parity.similarity)).toBeLessThan(1e-3);
  });

  const specialists = (model.entry.specialists ?? []).filter((sp) => !sp.task_net); // task-specific nets are checked at export (meta's export_check)
  it.skipIf(!specialists.length)(`runs each specialist as PyTorch did, through its own encoder and decoder${specialists.length ? '' : ' (skipped: the manifest lists no specialists)'}`, async () => {
    expect(Object.keys(parity.specialists ?? {}).sort()).toEqual(specialists.map((s) => s.name).sort());
    const emb = await model.encodeText(parity.prompts);
    const own = await model.decode(await model.encodePixels(parityImage(model.entry.input.size)), emb);
    for (const sp of specialists) {
      const want = parity.specialists![sp.name];
      const feats = await model.encodePixels(parityImage(model.entry.input.size), sp.name);
      expect(feats.specialist).toBe(sp.name);
      expect(maxAbsDiff(feats.pooled, want.pooled)).toBeLessThan(1e-3);
      const out = await model.decode(feats, emb);
      const sampled = out.maskLogits.flatMap((g) => Array.from(g.data)).filter((_, i) => i % parity.sample_step === 0);
      expect(maxAbsDiff(sampled, want.mask_logits)).toBeLessThan(2e-3);
      expect(maxAbsDiff(out.presenceLogit, want.presence_logit)).toBeLessThan(1e-3);
      // a different network from the model's own: its logits must differ somewhere
      expect(maxAbsDiff(sampled, own.maskLogits.flatMap((g) => Array.from(g.data)).filter((_, i) => i % parity.sample_step === 0))).toBeGreaterThan(1e-2);
    }
  });
});
