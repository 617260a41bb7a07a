import dcmjs from 'dcmjs';
import type { DicomSource } from './dicom.js';

type Naturalized = Record<string, unknown>;
const data = (dcmjs as unknown as {
  data: {
    DicomDict: new (meta: unknown) => { dict: unknown; write(): ArrayBuffer };
    DicomMetaDictionary: { denaturalizeDataset(d: object): unknown; uid(): string; date(): string; time(): string };
  };
}).data;

export interface SegSegment {
  label: string;
  /** Vocabulary slug, used as the code (private scheme 99PROMPTSEG) when there is no SNOMED CT code. */
  slug?: string;
  /** SNOMED CT [code, meaning] from the vocabulary, where the structure has one. */
  snomed?: [string, string] | null;
  /** What a reader of the SEG should know of the mask: the trust verdict and its reasons (SegmentDescription). */
  description?: string;
  mask: Uint8Array;
}

/** Packs a 0/1 mask into DICOM's 1-bit frames (first pixel in the least significant bit). */
export function packBits(frames: Uint8Array[]): Uint8Array {
  const n = frames.reduce((s, f) => s + f.length, 0);
  const out = new Uint8Array(Math.ceil(n / 8));
  let bit = 0;
  for (const f of frames) for (let i = 0; i < f.length; i++, bit++) if (f[i]) out[bit >> 3] |= 1 << (bit & 7);
  return out;
}

type SegSource = DicomSource & { rows: number; columns: number; spacing?: { row: number; col: number }; patient?: { name?: string; id?: string; birthDate?: string; sex?: string } };
type SegOptions = { anonymize?: boolean; version?: string; model?: string };

/** One frame of a SEG: a segment's mask on one source image. */
interface SegFrame {
  segment: number;
  mask: Uint8Array;
  source: { sopClassUid?: string; sopInstanceUid?: string; frame?: number };
  /** DimensionIndexValues, one per dimension. */
  index: number[];
  /** ImagePositionPatient of the frame (series). */
  position?: number[];
}

/** How the frames are laid out: the dimensions they are indexed by, and the geometry they share. */
interface SegLayout {
  dimensions: { pointer: number; group: number; label: string }[];
  orientation?: number[];
  thickness?: number;
  referenced: { seriesInstanceUid?: string; instances: { sopClassUid?: string; sopInstanceUid?: string }[] };
}

const PURPOSE = [{ CodeValue: '121322', CodingSchemeDesignator: 'DCM', CodeMeaning: 'Source image for image processing operation' }];
const DERIVATION = [{ CodeValue: '113076', CodingSchemeDesignator: 'DCM', CodeMeaning: 'Segmentation' }];

/**
 * A DICOM Segmentation (binary) referencing the source image: one frame per segment, labelled with
 * the prompt's structure. Patient and study identifiers are copied only because the SEG must sit in
 * the source's study; `anonymize` replaces them (the references to the source UIDs stay).
 */
export function buildDicomSeg(source: SegSource, segments: SegSegment[], opts: SegOptions = {}): Buffer {
  // a frame is named only in a multi-frame source
  const src = { sopClassUid: source.sopClassUid, sopInstanceUid: source.sopInstanceUid, ...(source.frames > 1 ? { frame: source.frame + 1 } : {}) };
  const frames = segments.map((s, i) => ({ segment: i + 1, mask: s.mask, source: src, index: [i + 1] }));
  return writeSeg(source, segments, frames, { dimensions: [SEGMENT_DIMENSION], referenced: { seriesInstanceUid: source.seriesInstanceUid, instances: [src] } }, opts);
}

/** A DICOM series' geometry and instances, in slice order, for a SEG of a volume. */
export interface SegSeries {
  source: SegSource;
  orientation: number[];
  sliceSpacing: number;
  instances: { sopClassUid: string; sopInstanceUid: string; position: number[] }[];
}

/**
 * A DICOM Segmentation of a series: one frame per segment and slice where the segment is present,
 * each referencing its source instance and carrying its plane position, indexed by segment and by
 * position; every instance of the series is referenced. `slices[k]` of a segment is its mask on the
 * k-th instance, rows as stored.
 */
export function buildSeriesDicomSeg(series: SegSeries, segments: (Omit<SegSegment, 'mask'> & { slices: Uint8Array[] })[], opts: SegOptions = {}): Buffer {
  const frames: SegFrame[] = [];
  segments.forEach((s, i) =>
    s.slices.forEach((mask, k) => {
      if (!mask.some((v) => v)) return;
      const inst = series.instances[k];
      frames.push({ segment: i + 1, mask, source: inst, index: [i + 1, k + 1], position: inst.position });
    }),
  );
  return writeSeg(series.source, segments, frames, {
    dimensions: [SEGMENT_DIMENSION, { pointer: 0x00200032, group: 0x00209113, label: 'Position' }],
    orientation: series.orientation,
    thickness: series.sliceSpacing,
    referenced: { seriesInstanceUid: series.source.seriesInstanceUid, instances: series.instances },
  }, opts);
}

/** The patient module and the General Study module's Type 2 attributes: the source's values, present and empty when it has none (or when anonymised: dates, accession and referring physician identify a visit). */
function patientAndStudy(source: SegSource, anonymize: boolean): { patient: Naturalized; study: Naturalized } {
  const patient = anonymize
    ? { PatientName: 'Anonymous', PatientID: 'ANON', PatientBirthDate: '', PatientSex: '' }
    : { PatientName: source.patient?.name ?? '', PatientID: source.patient?.id ?? '', PatientBirthDate: source.patient?.birthDate ?? '', PatientSex: source.patient?.sex ?? '' };
  const st = anonymize ? {} : (source.study ?? {});
  const study = {
    StudyDate: st.date ?? '',
    StudyTime: st.time ?? '',
    AccessionNumber: st.accessionNumber ?? '',
    ReferringPhysicianName: st.referringPhysicianName ?? '',
    StudyID: st.id ?? '',
    ...(st.description ? { StudyDescription: st.description } : {}),
  };
  return { patient, study };
}

const ref = (x: { sopClassUid?: string; sopInstanceUid?: string }) => ({ ReferencedSOPClassUID: x.sopClassUid, ReferencedSOPInstanceUID: x.sopInstanceUid });

/** One Segment Sequence item: its label and, as its type, the SNOMED CT code when the structure has one, else the vocabulary slug in the private 99PROMPTSEG scheme. */
function segmentItem(s: Omit<SegSegment, 'mask'>, i: number): Naturalized {
  const code = s.snomed ? { CodeValue: s.snomed[0], CodingSchemeDesignator: 'SCT', CodeMeaning: s.snomed[1] } : { CodeValue: (s.slug ?? 'free_text').slice(0, 16), CodingSchemeDesignator: '99PROMPTSEG', CodeMeaning: s.label.slice(0, 64) };
  return {
    SegmentNumber: i + 1,
    SegmentLabel: s.label.slice(0, 64),
    ...(s.description ? { SegmentDescription: s.description.slice(0, 64) } : {}),
    SegmentAlgorithmType: 'AUTOMATIC',
    SegmentAlgorithmName: 'promptseg',
    SegmentedPropertyCategoryCodeSequence: [{ CodeValue: '123037004', CodingSchemeDesignator: 'SCT', CodeMeaning: 'Anatomical Structure' }],
    SegmentedPropertyTypeCodeSequence: [code],
  };
}

/** The shared functional groups (pixel measures, orientation) and one per-frame group per frame: its segment, source image, dimension index and position. */
function functionalGroups(source: SegSource, frames: SegFrame[], layout: SegLayout): Naturalized {
  return {
    SharedFunctionalGroupsSequence: [
      {
        ...(source.spacing ? { PixelMeasuresSequence: [{ PixelSpacing: [source.spacing.row, source.spacing.col], SliceThickness: layout.thickness ?? 1, ...(layout.thickness ? { SpacingBetweenSlices: layout.thickness } : {}) }] } : {}),
        ...(layout.orientation ? { PlaneOrientationSequence: [{ ImageOrientationPatient: layout.orientation }] } : {}),
      },
    ],
    PerFrameFunctionalGroupsSequence: frames.map((f) => ({
      SegmentIdentificationSequence: [{ ReferencedSegmentNumber: f.segment }],
      DerivationImageSequence: [{ SourceImageSequence: [{ ...ref(f.source), ...(f.source.frame ? { ReferencedFrameNumber: f.source.frame } : {}), PurposeOfReferenceCodeSequence: PURPOSE }], DerivationCodeSequence: DERIVATION }],
      FrameContentSequence: [{ DimensionIndexValues: f.index }],
      ...(f.position ? { PlanePositionSequence: [{ ImagePositionPatient: f.position }] } : {}),
    })),
  };
}

const SEGMENT_DIMENSION = { pointer: 0x0062000b, group: 0x0062000a, label: 'Segment' };

function writeSeg(source: SegSource, segments: Omit<SegSegment, 'mask'>[], frames: SegFrame[], layout: SegLayout, opts: SegOptions): Buffer {
  if (!frames.length) throw new Error('a SEG needs at least one frame');
  const version = opts.version ?? '0.1.0';
  const sopInstanceUid = data.DicomMetaDictionary.uid();
  const seriesUid = data.DicomMetaDictionary.uid();
  const segSop = '1.2.840.10008.5.1.4.1.1.66.4';
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: segSop,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: '1.2.840.10008.1.2.1',
    ImplementationClassUID: '2.25.270195116355386520873012093637116823412',
    ImplementationVersionName: 'PROMPTSEG',
  };
  const { patient, study } = patientAndStudy(source, opts.anonymize ?? false);
  const dimensionOrganizationUid = data.DicomMetaDictionary.uid();
  const usesPrivateCodes = segments.some((s) => !s.snomed);
  const dataset: Naturalized = {
    SOPClassUID: segSop,
    SOPInstanceUID: sopInstanceUid,
    StudyInstanceUID: source.studyInstanceUid,
    SeriesInstanceUID: seriesUid,
    FrameOfReferenceUID: source.frameOfReferenceUid ?? data.DicomMetaDictionary.uid(),
    Modality: 'SEG',
    SeriesNumber: 9901,
    InstanceNumber: 1,
    SeriesDescription: 'promptseg text-prompted segmentation (research use only)',
    Manufacturer: 'promptseg',
    ManufacturerModelName: (opts.model ?? 'promptseg-builtin').slice(0, 64),
    SoftwareVersions: version,
    ContentDate: data.DicomMetaDictionary.date(),
    ContentTime: data.DicomMetaDictionary.time(),
    ContentLabel: 'PROMPTSEG',
    ContentDescription: 'Masks from text prompts; not for clinical use',
    ContentCreatorName: 'promptseg^',
    DeviceSerialNumber: version,
    ...patient,
    ...study,
    PositionReferenceIndicator: source.positionReferenceIndicator ?? '',
    PatientOrientation: '',
    ImageType: ['DERIVED', 'PRIMARY'],
    SegmentationType: 'BINARY',
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: source.rows,
    Columns: source.columns,
    BitsAllocated: 1,
    BitsStored: 1,
    HighBit: 0,
    PixelRepresentation: 0,
    LossyImageCompression: '00',
    NumberOfFrames: frames.length,
    ReferencedSeriesSequence: [{ SeriesInstanceUID: layout.referenced.seriesInstanceUid, ReferencedInstanceSequence: layout.referenced.instances.map(ref) }],
    DimensionOrganizationSequence: [{ DimensionOrganizationUID: dimensionOrganizationUid }],
    DimensionIndexSequence: layout.dimensions.map((d) => ({ DimensionOrganizationUID: dimensionOrganizationUid, DimensionIndexPointer: d.pointer, FunctionalGroupPointer: d.group, DimensionDescriptionLabel: d.label })),
    ...(usesPrivateCodes
      ? { CodingSchemeIdentificationSequence: [{ CodingSchemeDesignator: '99PROMPTSEG', CodingSchemeName: 'promptseg structure vocabulary (prompts/vocabulary.json slugs)', CodingSchemeResponsibleOrganization: 'promptseg' }] }
      : {}),
    SegmentSequence: segments.map(segmentItem),
    ...functionalGroups(source, frames, layout),
    PixelData: packBits(frames.map((f) => f.mask)).buffer,
    _vrMap: { PixelData: 'OB' },
  };
  const dict = new data.DicomDict(data.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = data.DicomMetaDictionary.denaturalizeDataset(dataset);
  return Buffer.from(dict.write());
}
