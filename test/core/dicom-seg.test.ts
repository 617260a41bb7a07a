import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import dcmjs from 'dcmjs';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/core/image/decode.js';
import { buildDicomSeg } from '../../src/core/image/dicom-seg.js';
import { ctSliceHu, rgbSecondaryCapture, writeDicom, xrayMonochrome1 } from '../helpers/dicom-fixtures.js';

const noValidator = spawnSync('dciodvfy', ['-h'], { encoding: 'utf8' }).error ? 'dciodvfy (Debian package dicom3tools) is not installed' : undefined;

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
    const seg = buildDicomSeg({ ...img.dicom!, rows: 64, columns: 64, spacing: img.spacing }, [{ label: 'lungs', slug: 'lungs', mask: a }, { label: 'heart', slug: 'heart', snomed: ['80891009', 'Heart'], description: 'promptseg review, presence 0.97: small_mask', mask: b }]);
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
    // a structure with a SNOMED CT code (the vocabulary's) is coded by it, one without by its slug in the declared private scheme
    expect(segs[1].elements.x0062000f.items![0].dataSet!.string('x00080100')).toBe('80891009');
    expect(segs[1].elements.x0062000f.items![0].dataSet!.string('x00080102')).toBe('SCT');
    expect(segs[0].elements.x0062000f.items![0].dataSet!.string('x00080102')).toBe('99PROMPTSEG');
    // the trust verdict is where a viewer shows it: the segment's description
    expect(segs[1].string('x00620006')).toBe('promptseg review, presence 0.97: small_mask');
    const px = ds.elements.x7fe00010;
    const bits = new Uint8Array(seg.buffer, seg.byteOffset + px.dataOffset, px.length);
    expect(Array.from(unpack(bits, 0, 4096))).toEqual(Array.from(a));
    expect(Array.from(unpack(bits, 1, 4096))).toEqual(Array.from(b));
    expect(ds.string('x00100020')).toBe('SYNTH-001');
    // dcmjs, the library users read SEGs with, reads the same masks back
    const d = (dcmjs as unknown as { data: { DicomMessage: { readFile(b: ArrayBuffer): { dict: object } }; DicomMetaDictionary: { naturalizeDataset(d: object): Record<string, unknown> } } }).data;
    const nat = d.DicomMetaDictionary.naturalizeDataset(d.DicomMessage.readFile(seg.buffer.slice(seg.byteOffset, seg.byteOffset + seg.byteLength)).dict);
    expect(nat.NumberOfFrames).toBe(2);
    expect((nat.SegmentSequence as { SegmentLabel: string }[]).map((x) => x.SegmentLabel)).toEqual(['lungs', 'heart']);
    const pd = new Uint8Array((nat.PixelData as ArrayBuffer[])[0]);
    expect(Array.from(unpack(pd, 0, 4096))).toEqual(Array.from(a));
    expect(Array.from(unpack(pd, 1, 4096))).toEqual(Array.from(b));
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

describe.skipIf(!!noValidator)(`DICOM SEG against the dciodvfy validator${noValidator ? ` (skipped: ${noValidator})` : ''}`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'seg-validate-'));
  /** dciodvfy's error lines for a file (it prints to stderr). */
  const errorsOf = (bytes: Buffer, name: string) => {
    const file = path.join(dir, `${name}.dcm`);
    writeFileSync(file, bytes);
    const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
  };
  const multiFrame = () => {
    const px = new Uint8Array(2 * 24 * 24).map((_, i) => (i * 7) % 256);
    return writeDicom({ SOPClassUID: '1.2.840.10008.5.1.4.1.1.7.2', Modality: 'OT', Rows: 24, Columns: 24, NumberOfFrames: 2, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: px.buffer, _vrMap: { PixelData: 'OB' } });
  };
  const sources = {
    'CT slice': ctSliceHu(48, 0.7).bytes,
    'MONOCHROME1 radiograph': xrayMonochrome1(40).bytes,
    'RGB secondary capture': rgbSecondaryCapture(40, 32).bytes,
    'frame 2 of a multi-frame image': multiFrame().bytes,
    'CT slice with its study attributes': ctSliceHu(32, 0.7, { StudyDate: '20260102', StudyTime: '101500', AccessionNumber: 'ACC-7', ReferringPhysicianName: 'Doe^Jane', StudyID: 'S1', PositionReferenceIndicator: 'XY' }).bytes,
  };

  for (const [name, bytes] of Object.entries(sources)) {
    it(`reports 0 errors for the SEG of a ${name}, plain and anonymised`, async () => {
      const img = await decodeImage(bytes, { maxPixels: 1e6, ...(name.startsWith('frame 2') ? { frame: 1 } : {}) });
      const n = img.width * img.height;
      const a = new Uint8Array(n).map((_, i) => (i % 5 === 0 ? 1 : 0));
      const b = new Uint8Array(n).map((_, i) => (i % 3 === 0 ? 1 : 0));
      const segments = [{ label: 'Heart', slug: 'heart', mask: a }, { label: 'left lung', slug: 'left_lung', mask: b }];
      for (const anonymize of [false, true]) {
        const seg = buildDicomSeg({ ...img.dicom!, rows: img.height, columns: img.width, spacing: img.spacing }, segments, { anonymize, version: '9.9.9' });
        expect(errorsOf(seg, `${name}-${anonymize}`.replace(/\W+/g, '-'))).toEqual([]);
      }
    });
  }

  it('carries the source study\'s attributes, and blanks them when anonymised', async () => {
    const src = sources['CT slice with its study attributes'];
    const img = await decodeImage(src, { maxPixels: 1e6 });
    const mask = new Uint8Array(img.width * img.height).fill(1);
    const plain = dicomParser.parseDicom(new Uint8Array(buildDicomSeg({ ...img.dicom!, rows: img.height, columns: img.width }, [{ label: 'liver', slug: 'liver', mask }])));
    expect([plain.string('x00080020'), plain.string('x00080050'), plain.string('x00080090'), plain.string('x00200010'), plain.string('x00201040')]).toEqual(['20260102', 'ACC-7', 'Doe^Jane', 'S1', 'XY']);
    const anon = dicomParser.parseDicom(new Uint8Array(buildDicomSeg({ ...img.dicom!, rows: img.height, columns: img.width }, [{ label: 'liver', slug: 'liver', mask }], { anonymize: true })));
    expect([anon.string('x00080020'), anon.string('x00080050'), anon.string('x00080090')]).toEqual([undefined, undefined, undefined]);
    expect(anon.elements.x00080050).toBeDefined(); // present and empty (Type 2)
  });
});

