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

/**
 * A synthetic chest CT slice in Hounsfield units: air outside, a soft-tissue body (40 HU), two
 * lungs (-800 HU) and a bone ring; stored as signed 16-bit with intercept -1024.
 */
export function ctSliceHu(size = 128, spacing = 0.7, extra: Record<string, unknown> = {}): DicomFixture & { hu: Float32Array } {
  const hu = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x / size - 0.5, v = y / size - 0.5;
      let h = -1000;
      const body = (u / 0.45) ** 2 + (v / 0.35) ** 2;
      if (body < 1) h = 40;
      if (body < 1 && body > 0.85) h = 700;
      if (((u + 0.18) / 0.13) ** 2 + (v / 0.22) ** 2 < 1 || ((u - 0.18) / 0.13) ** 2 + (v / 0.22) ** 2 < 1) h = -800;
      hu[y * size + x] = h;
    }
  }
  const stored = new Int16Array(size * size);
  for (let i = 0; i < stored.length; i++) stored[i] = hu[i] + 1024;
  const f = writeDicom({
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
    SliceThickness: 2.5,
    PixelData: stored.buffer,
    _vrMap: { PixelData: 'OW' },
    ...extra,
  });
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
