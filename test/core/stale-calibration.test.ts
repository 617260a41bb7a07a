import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../src/core/models/registry.js';
import { calibrationFor, createPipelineContext, segment } from '../../src/core/pipeline/segment.js';
import { Vocabulary } from '../../src/core/vocabulary.js';
import { decodeImage } from '../../src/core/image/decode.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { MODELS_DIR, ROOT } from '../helpers/project.js';

describe('a calibration fitted on other model files', () => {
  it('is set aside, and results say stale instead of presenting uncalibrated scores as calibrated', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-stale-'));
    cpSync(path.join(MODELS_DIR, 'manifest.json'), path.join(dir, 'manifest.json'));
    cpSync(path.join(MODELS_DIR, 'promptseg-builtin'), path.join(dir, 'promptseg-builtin'), { recursive: true, filter: (src) => !/train-state|weights\.pt$/.test(src) });
    const calFile = path.join(dir, 'promptseg-builtin', 'calibration.json');
    const cal = JSON.parse(readFileSync(calFile, 'utf8')) as { fitted_on: { model_files_sha256: string } };
    cal.fitted_on.model_files_sha256 = 'f'.repeat(64); // as after a re-export without calibrate
    writeFileSync(calFile, JSON.stringify(cal));
    const registry = new ModelRegistry(dir, 2);
    try {
      const ctx = createPipelineContext(registry, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 4);
      const image = await decodeImage(await chestLikePng(96), { maxPixels: 4e7 });
      const res = await segment(ctx, { image, prompts: ['heart'] });
      expect(res.calibration).toBe('stale');
      expect(calibrationFor(ctx, registry.get().entry)).toBeUndefined();
      expect(res.results[0].presence).toBeCloseTo(res.results[0].presenceRaw, 6); // raw scores, said to be raw
    } finally {
      registry.dispose();
    }
    // the shipped calibration matches the shipped files
    const shipped = new ModelRegistry(MODELS_DIR, 2);
    try {
      const ctx = createPipelineContext(shipped, Vocabulary.load(path.join(ROOT, 'prompts', 'vocabulary.json')), 4);
      const image = await decodeImage(await chestLikePng(96), { maxPixels: 4e7 });
      expect((await segment(ctx, { image, prompts: ['heart'] })).calibration).toBe('fitted');
    } finally {
      shipped.dispose();
    }
  });
});
