import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/core/image/decode.js';
import { buildDicomSeg } from '../../src/core/image/dicom-seg.js';
import { ctSliceHu } from '../helpers/dicom-fixtures.js';

/** Unpacks frame f of 1-bit pixel data (first pixel in the least significant bit). */
function unpack(bytes: Uint8Array, frame: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const bit = frame * n + i;
    out[i] = (bytes[bit >> 3] >> (bit & 7)) & 1;
  }
  return out;
}

describe('DICOM SEG output, read back with dicom-parser (an independent parser)', () => {
  it('references the source series and instance, carries one labelled frame per segment with the right bits', async () => {
    const ct = ctSliceHu(64, 0.8);
    const img = await decodeImage(ct.bytes, { maxPixels: 1e6 });
    const a = new Uint8Array(64 * 64), b = new Uint8Array(64 * 64);
    for (let i = 0; i < 300; i++) a[i * 3] = 1;
    b[64 * 10 + 5] = 1;
    const seg = buildDicomSeg({ ...img.dicom!, rows: 64, columns: 64, spacing: img.spacing }, [{ label: 'lungs', slug: 'lungs', mask: a }, { label: 'heart', slug: 'heart', mask: b }]);
    const ds = dicomParser.parseDicom(new Uint8Array(seg));
    expect(ds.string('x00080016')).toBe('1.2.840.10008.5.1.4.1.1.66.4');
    expect(ds.string('x00080060')).toBe('SEG');
    expect(ds.string('x0020000d')).toBe(ct.studyUid);
    expect(ds.string('x0020000e')).not.toBe(ct.seriesUid);
    const refSeries = ds.elements.x00081115.items![0].dataSet!;
    expect(refSeries.string('x0020000e')).toBe(ct.seriesUid);
    expect(refSeries.elements.x0008114a.items![0].dataSet!.string('x00081155')).toBe(ct.sopUid);
    expect(ds.intString('x00280008')).toBe(2);
    expect([ds.uint16('x00280010'), ds.uint16('x00280011'), ds.uint16('x00280100')]).toEqual([64, 64, 1]);
    const segs = ds.elements.x00620002.items!.map((it) => it.dataSet!);
    expect(segs.map((s) => s.string('x00620005'))).toEqual(['lungs', 'heart']);
    expect(segs[1].elements.x0062000f.items![0].dataSet!.string('x00080100')).toBe('80891009');
    const px = ds.elements.x7fe00010;
    const bits = new Uint8Array(seg.buffer, seg.byteOffset + px.dataOffset, px.length);
    expect(Array.from(unpack(bits, 0, 4096))).toEqual(Array.from(a));
    expect(Array.from(unpack(bits, 1, 4096))).toEqual(Array.from(b));
    expect(ds.string('x00100020')).toBe('SYNTH-001');
  });

  it('anonymize replaces patient identifiers but keeps the references', async () => {
    const ct = ctSliceHu(32);
    const img = await decodeImage(ct.bytes, { maxPixels: 1e6 });
    const seg = buildDicomSeg({ ...img.dicom!, rows: 32, columns: 32 }, [{ label: 'liver', slug: 'liver', mask: new Uint8Array(1024).fill(1) }], { anonymize: true });
    const ds = dicomParser.parseDicom(new Uint8Array(seg));
    expect(ds.string('x00100010')).toBe('Anonymous');
    expect(ds.string('x00100020')).toBe('ANON');
    expect(new TextDecoder().decode(seg)).not.toContain('SYNTH-001');
    expect(ds.elements.x00081115.items![0].dataSet!.string('x0020000e')).toBe(ct.seriesUid);
  });
});
