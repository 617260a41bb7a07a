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
}

/** A 2D field of floats (logits, probabilities), row-major. */
export interface FloatGrid {
  width: number;
  height: number;
  data: Float32Array;
}
