import { crc32, deflateRawSync } from 'node:zlib';
import dcmjs from 'dcmjs';

const { DicomDict, DicomMetaDictionary } = (dcmjs as unknown as { data: { DicomDict: new (meta: unknown) => { dict: unknown; write(): ArrayBuffer }; DicomMetaDictionary: { denaturalizeDataset(d: object): unknown } } }).data;

let uidCounter = 0;
const uid = () => `2.25.${Date.now()}${(uidCounter++).toString().padStart(4, '0')}`;

export interface DicomFixture {
  bytes: Buffer;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
}

/** Writes a DICOM Part 10 file with dcmjs (an independent writer) from a naturalised dataset. */
export function writeDicom(dataset: Record<string, unknown>, transferSyntax = '1.2.840.10008.1.2.1'): DicomFixture {
  const studyUid = uid(), seriesUid = uid(), sopUid = uid();
  const sopClass = (dataset.SOPClassUID as string) ?? '1.2.840.10008.5.1.4.1.1.7';
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClass,
    MediaStorageSOPInstanceUID: sopUid,
    TransferSyntaxUID: transferSyntax,
    ImplementationClassUID: '2.25.1234567',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset({
    SOPClassUID: sopClass,
    SOPInstanceUID: sopUid,
    StudyInstanceUID: studyUid,
    SeriesInstanceUID: seriesUid,
    PatientName: 'Test^Synthetic',
    PatientID: 'SYNTH-001',
    ...dataset,
  });
  return { bytes: Buffer.from(dict.write()), studyUid, seriesUid, sopUid };
}

/** A drawn chest in HU: air, a soft-tissue body (40), optionally its bone ring (700), two lungs (-800) of half-axes rx, ry. */
function chestHu(size: number, rx: number, ry: number, ring: boolean): Float32Array {
  const hu = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x / size - 0.5, v = y / size - 0.5;
      let h = -1000;
      const body = (u / 0.45) ** 2 + (v / 0.35) ** 2;
      if (body < 1) h = 40;
      if (ring && body < 1 && body > 0.85) h = 700;
      if (((u + 0.18) / rx) ** 2 + (v / ry) ** 2 < 1 || ((u - 0.18) / rx) ** 2 + (v / ry) ** 2 < 1) h = -800;
      hu[y * size + x] = h;
    }
  }
  return hu;
}

/** The CT image attributes of a square slice stored as signed 16-bit with intercept -1024. */
function ctImage(size: number, spacing: number, stored: Int16Array): Record<string, unknown> {
  return {
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.2',
    Modality: 'CT',
    Rows: size,
    Columns: size,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    BitsAllocated: 16,
    BitsStored: 16,
    HighBit: 15,
    PixelRepresentation: 1,
    RescaleIntercept: -1024,
    RescaleSlope: 1,
    PixelSpacing: [spacing, spacing],
    PixelData: stored.buffer,
    _vrMap: { PixelData: 'OW' },
  };
}

/**
 * A synthetic chest CT slice in Hounsfield units: air outside, a soft-tissue body (40 HU), two
 * lungs (-800 HU) and a bone ring; stored as signed 16-bit with intercept -1024.
 */
export function ctSliceHu(size = 128, spacing = 0.7, extra: Record<string, unknown> = {}): DicomFixture & { hu: Float32Array } {
  const hu = chestHu(size, 0.13, 0.22, true);
  const stored = new Int16Array(size * size);
  for (let i = 0; i < stored.length; i++) stored[i] = hu[i] + 1024;
  const f = writeDicom({ ...ctImage(size, spacing, stored), SliceThickness: 2.5, ...extra });
  return { ...f, hu };
}

/** A synthetic X-ray stored MONOCHROME1 (high values are dark), 8-bit, with imager pixel spacing. */
export function xrayMonochrome1(size = 96): DicomFixture & { stored: Uint8Array } {
  const stored = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) stored[y * size + x] = x < size / 2 ? 200 : 20;
  const f = writeDicom({
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.1',
    Modality: 'CR',
    Rows: size,
    Columns: size,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME1',
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    ImagerPixelSpacing: [0.2, 0.2],
    PixelData: stored.buffer,
    _vrMap: { PixelData: 'OB' },
  });
  return { ...f, stored };
}

/** An RGB secondary capture (interleaved), 8-bit. */
export function rgbSecondaryCapture(w = 80, h = 64): DicomFixture {
  const px = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    px[i * 3] = 200;
    px[i * 3 + 1] = (i % w) * 2;
    px[i * 3 + 2] = 30;
  }
  return writeDicom({
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.7',
    Modality: 'OT',
    Rows: h,
    Columns: w,
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'RGB',
    PlanarConfiguration: 0,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: px.buffer,
    _vrMap: { PixelData: 'OB' },
  });
}

/**
 * A CT series made by code: n axial slices of `size` px (0.7 mm), `thickness` mm apart from
 * z = -20, one study and series, a chest whose lungs grow with k. Instance numbers run backwards
 * and file names are shuffled, so that only ImagePositionPatient gives the order.
 */
export function ctSeries(n = 5, size = 64, thickness = 2.5, opts: { orientation?: number[]; positions?: number[]; seriesUid?: string } = {}): { files: { name: string; bytes: Buffer; z: number }[]; studyUid: string; seriesUid: string } {
  const studyUid = uid(), seriesUid = opts.seriesUid ?? uid(), forUid = uid();
  const files = Array.from({ length: n }, (_, k) => {
    const z = opts.positions?.[k] ?? -20 + k * thickness;
    const r = 0.1 + 0.02 * k;
    const stored = Int16Array.from(chestHu(size, r, r + 0.08, false), (h) => h + 1024);
    const f = writeDicom({
      StudyInstanceUID: studyUid,
      SeriesInstanceUID: seriesUid,
      FrameOfReferenceUID: forUid,
      ...ctImage(size, 0.7, stored),
      InstanceNumber: n - k,
      ImageOrientationPatient: opts.orientation ?? [1, 0, 0, 0, 1, 0],
      ImagePositionPatient: [-22.4, -22.4, z],
      SliceThickness: thickness,
    });
    return { name: `img${((k * 7) % n).toString().padStart(3, '0')}-${k}.dcm`, bytes: f.bytes, z };
  });
  return { files, studyUid, seriesUid };
}

/**
 * A zip archive (deflated entries) of these files, written byte by byte. `declare` overrides the
 * uncompressed size an entry states, to make an archive that lies about its contents.
 */
export function zipOf(files: { name: string; bytes: Uint8Array }[], declare: Record<string, number> = {}): Buffer {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name);
    const data = deflateRawSync(f.bytes);
    const crc = crc32(f.bytes) >>> 0;
    const size = declare[f.name] ?? f.bytes.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += 30 + name.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}
