/** A decoded 2D image: 8-bit RGB, row-major, interleaved. */
export interface RasterImage {
  width: number;
  height: number;
  /** width * height * 3 bytes */
  data: Uint8Array;
  /** Millimetres per pixel along rows (y) and columns (x), when the source says. */
  spacing?: { row: number; col: number };
  format: string;
  /** DICOM grey images keep their modality values so they can be re-windowed per structure. */
  dicom?: import('./dicom.js').DicomSource;
  /** Set on a working copy of a larger image (working-resolution.ts): the size results are given in. */
  original?: import('./working-resolution.js').OriginalSize;
}

/** A 2D field of floats (logits, probabilities), row-major. */
export interface FloatGrid {
  width: number;
  height: number;
  data: Float32Array;
}
