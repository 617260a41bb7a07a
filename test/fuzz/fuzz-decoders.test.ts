import { describe, expect, it } from 'vitest';
import { chestLikePng } from '../helpers/fixtures.js';
import { ctSliceHu, rgbSecondaryCapture, xrayMonochrome1 } from '../helpers/dicom-fixtures.js';
import { formatReport, fuzzDecoder } from './fuzz-decoders.js';
import { niftiVolume } from '../helpers/nifti-fixtures.js';

// npm test runs a short version; `npm run fuzz` sets FUZZ_CASES=10000 per format.
const CASES = Number(process.env.FUZZ_CASES ?? 250);

describe(`decoders under mutated input (${CASES} cases per format, seeded)`, () => {
  const seeds: [string, () => Promise<Buffer>][] = [
    ['png', () => chestLikePng(64)],
    ['dicom-ct-int16', async () => ctSliceHu(48).bytes],
    ['dicom-mono1-uint8', async () => xrayMonochrome1(40).bytes],
    ['dicom-rgb', async () => rgbSecondaryCapture(32, 24).bytes],
    ['nifti-2d', async () => niftiVolume([40, 32, 1], [0.5, 0.7, 1]).bytes],
    ['nifti-2d-gz', async () => niftiVolume([40, 32, 1], [0.5, 0.7, 1], { gzip: true }).bytes],
  ];
  for (const [name, make] of seeds) {
    it(`${name}: every case ends in a result or a typed error within the time bound`, { timeout: Math.max(60_000, CASES * 40) }, async () => {
      const r = await fuzzDecoder(name, await make(), CASES, 42);
      process.stdout.write(formatReport(r) + '\n');
      expect(r.crashes).toEqual([]);
      expect(r.slow).toBe(0);
      expect(r.decoded + Object.values(r.typedErrors).reduce((a, b) => a + b, 0)).toBe(CASES);
    });
  }
});
