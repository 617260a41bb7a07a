import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { toGreyLevels } from '../../src/core/image/mask-encode.js';
import { probabilityMap } from '../../src/core/pipeline/segment.js';
import { entropyBits } from '../../src/core/trust/scores.js';
import { getResultArtifact } from '../../src/service/result-artifacts.js';
import { operationByName } from '../../src/service/operation-table.js';
import { runOperation } from '../../src/service/run-operation.js';
import type { SegmentOutput } from '../../src/service/schemas.js';
import { drawnChestRadiographPng } from '../helpers/fixtures.js';
import { testContext } from '../helpers/service.js';

/**
 * A stored result keeps a plain prompt's probability map as the model's grid and draws the PNG
 * when it is fetched; prompts whose logits were averaged or pasted keep 8-bit maps made at once.
 * Either way the served map is the result's own probabilities in 8 bits.
 */
describe('stored result maps', () => {
  it('the probability and uncertainty PNGs are the result\'s probabilities, whether drawn when fetched or kept', async () => {
    const ctx = testContext();
    ctx.keepFloatMaps = true; // keep the result's logits too, to compare with
    const op = operationByName('segment')!;
    const image = { base64: (await drawnChestRadiographPng(300, 260)).toString('base64') };
    for (const extra of [{}, { tta: 2 }]) {
      const r = await runOperation(ctx, op, { image, prompts: ['left lung', 'heart', 'polyp'], ...extra }, { via: 'eval' });
      expect(r.ok).toBe(true);
      const out = r.value as SegmentOutput;
      const stored = ctx.results.get(out.result_id)!;
      for (const [i, res] of stored.result.results.entries()) {
        // plain prompts: kept as the model's grid; paraphrase-averaged ones: as 8-bit maps
        expect(!!stored.maps[i].source, JSON.stringify(extra)).toBe(!('tta' in extra));
        const grey = toGreyLevels(probabilityMap(res));
        const prob = await getResultArtifact(ctx, out.result_id, 'probability', i);
        expect(prob.ok).toBe(true);
        const px = await sharp(prob.ok ? prob.value.bytes : Buffer.alloc(0)).extractChannel(0).raw().toBuffer();
        expect(px.length).toBe(300 * 260);
        expect(Buffer.from(grey).equals(px)).toBe(true);
        if ('tta' in extra) continue; // the uncertainty map is then the paraphrases' spread
        const unc = await getResultArtifact(ctx, out.result_id, 'uncertainty', i);
        const upx = await sharp(unc.ok ? unc.value.bytes : Buffer.alloc(0)).extractChannel(0).raw().toBuffer();
        expect(upx.every((v, q) => v === Math.round(entropyBits(grey[q] / 255) * 255))).toBe(true);
      }
    }
  }, 60_000);
});
