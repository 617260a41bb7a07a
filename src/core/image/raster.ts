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
  /** Set by mapGrid: the smaller grid and placement these values were interpolated from (mapGrid(from...) makes them again). Never set on a grid whose data is changed afterwards. */
  from?: GridSource;
}

/** How a grid was made by mapGrid: from `grid` covering `gridSpan` input pixels, placed by `place`. */
export interface GridSource {
  grid: FloatGrid;
  gridSpan: number;
  place: GridPlacement;
}

/** Where an image sits in a model input: its offset and the input pixels per image pixel. */
export interface GridPlacement {
  left: number;
  top: number;
  scaleX: number;
  scaleY: number;
}
