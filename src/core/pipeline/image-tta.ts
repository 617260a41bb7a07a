import type { FloatGrid, RasterImage } from '../image/raster.js';

/**
 * Image-side test-time augmentation: a transform of the input image and the inverse that maps the
 * transformed image's logit grid (at original size) back onto the original pixels. Geometric
 * transforms move DICOM modality values too, so per-structure CT windows see the same geometry;
 * intensity transforms change the displayed pixels only.
 */
export interface ImageTransform {
  name: string;
  /** True when the transform mirrors the image (not used for lateral or thoracic structures). */
  flips: boolean;
  /** True for the right-angle rotations and diagonal reflections: only for orientation-free images (ORIENTATION_FREE_MODALITIES). */
  orientationFreeOnly?: boolean;
  apply(image: RasterImage): RasterImage;
  invert(g: FloatGrid): FloatGrid;
}

/** Moves every plane of the image by (dx, dy) pixels, filling with the nearest edge pixel. */
function shiftPlane<T extends Uint8Array | Float32Array>(src: T, w: number, h: number, ch: number, dx: number, dy: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(h - 1, Math.max(0, y - dy));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(w - 1, Math.max(0, x - dx));
      for (let c = 0; c < ch; c++) out[(y * w + x) * ch + c] = src[(sy * w + sx) * ch + c];
    }
  }
  return out;
}

function flipPlane<T extends Uint8Array | Float32Array>(src: T, w: number, h: number, ch: number, horizontal: boolean): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = horizontal ? w - 1 - x : x, sy = horizontal ? y : h - 1 - y;
      for (let c = 0; c < ch; c++) out[(y * w + x) * ch + c] = src[(sy * w + sx) * ch + c];
    }
  }
  return out;
}

/** Swaps the axes of every plane: pixel (x, y) of the w x h source lands at (y, x) of an h x w output. */
function transposePlane<T extends Uint8Array | Float32Array>(src: T, w: number, h: number, ch: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < ch; c++) out[(x * h + y) * ch + c] = src[(y * w + x) * ch + c];
    }
  }
  return out;
}

/**
 * Scales every plane by s about the image centre (bilinear; beyond the edges the nearest edge pixel):
 * s < 1 shows the whole image smaller, s > 1 a closer view of its centre.
 */
function scalePlane<T extends Uint8Array | Float32Array>(src: T, w: number, h: number, ch: number, s: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const round = src instanceof Uint8Array;
  const cx = w / 2, cy = h / 2;
  for (let y = 0; y < h; y++) {
    const sy = Math.min(h - 1, Math.max(0, (y + 0.5 - cy) / s + cy - 0.5));
    const y0 = Math.floor(sy), y1 = Math.min(h - 1, y0 + 1), fy = sy - y0;
    for (let x = 0; x < w; x++) {
      const sx = Math.min(w - 1, Math.max(0, (x + 0.5 - cx) / s + cx - 0.5));
      const x0 = Math.floor(sx), x1 = Math.min(w - 1, x0 + 1), fx = sx - x0;
      for (let c = 0; c < ch; c++) {
        const a = src[(y0 * w + x0) * ch + c] * (1 - fx) + src[(y0 * w + x1) * ch + c] * fx;
        const b = src[(y1 * w + x0) * ch + c] * (1 - fx) + src[(y1 * w + x1) * ch + c] * fx;
        const v = a * (1 - fy) + b * fy;
        out[(y * w + x) * ch + c] = round ? Math.round(v) : v;
      }
    }
  }
  return out;
}

function geometric(name: string, flips: boolean, move: <T extends Uint8Array | Float32Array>(p: T, w: number, h: number, ch: number, inverse: boolean) => T): ImageTransform {
  return {
    name,
    flips,
    apply(image) {
      const { width: w, height: h } = image;
      const data = move(image.data, w, h, 3, false);
      const dicom = image.dicom?.values ? { ...image.dicom, values: move(image.dicom.values, w, h, 1, false) } : image.dicom;
      return { ...image, data, dicom };
    },
    invert(g) {
      return { width: g.width, height: g.height, data: move(g.data, g.width, g.height, 1, true) };
    },
  };
}

function intensity(name: string, gamma: number): ImageTransform {
  const lut = Uint8Array.from({ length: 256 }, (_, v) => Math.round(255 * (v / 255) ** gamma));
  return {
    name,
    flips: false,
    apply: (image) => ({ ...image, data: image.data.map((v) => lut[v]) }),
    invert: (g) => g,
  };
}

const shiftBy = (image: { width: number; height: number }) => Math.max(1, Math.round(0.03 * Math.max(image.width, image.height)));

/**
 * A right-angle rotation (quarter turns clockwise, 1 or 3) or a reflection across a diagonal: the
 * image's width and height swap, and the inverse swaps them back. Only for images with no preferred
 * orientation (ORIENTATION_FREE_MODALITIES).
 */
function quarter(name: string, turns: 1 | 3 | 'transpose' | 'antitranspose'): ImageTransform {
  // each is the transpose followed by a flip of the result (or none); the inverse undoes them in reverse order
  const flipAfter = turns === 1 ? 'h' : turns === 3 ? 'v' : turns === 'antitranspose' ? 'hv' : '';
  const flipAll = <T extends Uint8Array | Float32Array>(p: T, w: number, h: number, ch: number): T => {
    let q = p;
    if (flipAfter.includes('h')) q = flipPlane(q, w, h, ch, true);
    if (flipAfter.includes('v')) q = flipPlane(q, w, h, ch, false);
    return q;
  };
  const forward = <T extends Uint8Array | Float32Array>(p: T, w: number, h: number, ch: number): T => flipAll(transposePlane(p, w, h, ch), h, w, ch);
  const backward = <T extends Uint8Array | Float32Array>(p: T, w: number, h: number, ch: number): T => transposePlane(flipAll(p, w, h, ch), w, h, ch);
  return {
    name,
    flips: turns === 'transpose' || turns === 'antitranspose', // the diagonal reflections mirror the image
    orientationFreeOnly: true,
    apply(image) {
      const { width: w, height: h } = image;
      const data = forward(image.data, w, h, 3);
      const dicom = image.dicom?.values ? { ...image.dicom, values: forward(image.dicom.values, w, h, 1) } : image.dicom;
      const spacing = image.spacing ? { row: image.spacing.col, col: image.spacing.row } : undefined;
      return { ...image, width: h, height: w, data, dicom, ...(spacing ? { spacing } : {}) };
    },
    // g is the transformed image's grid (h x w of the original); back to the original's w x h
    invert: (g) => ({ width: g.height, height: g.width, data: backward(g.data, g.width, g.height, 1) }),
  };
}

/** In the order they are used: tta_image = n takes the first n that suit the prompts. */
export const IMAGE_TRANSFORMS: ImageTransform[] = [
  geometric('hflip', true, (p, w, h, ch) => flipPlane(p, w, h, ch, true)),
  quarter('transpose', 'transpose'),
  intensity('gamma_0.8', 0.8),
  quarter('rot90', 1),
  geometric('shift_+3%', false, (p, w, h, ch, inv) => {
    const d = shiftBy({ width: w, height: h });
    return shiftPlane(p, w, h, ch, inv ? -d : d, inv ? -d : d);
  }),
  quarter('rot270', 3),
  intensity('gamma_1.25', 1.25),
  quarter('antitranspose', 'antitranspose'),
  geometric('shift_-3%', false, (p, w, h, ch, inv) => {
    const d = shiftBy({ width: w, height: h });
    return shiftPlane(p, w, h, ch, inv ? d : -d, inv ? d : -d);
  }),
  geometric('scale_1.1', false, (p, w, h, ch, inv) => scalePlane(p, w, h, ch, inv ? 1 / 1.1 : 1.1)),
  geometric('scale_0.9', false, (p, w, h, ch, inv) => scalePlane(p, w, h, ch, inv ? 1 / 0.9 : 0.9)),
  geometric('vflip', true, (p, w, h, ch) => flipPlane(p, w, h, ch, false)),
];

/**
 * Modalities whose images have no preferred orientation (EM sections, histology tiles, dermoscopy
 * photographs): their structures also get the right-angle rotations and diagonal reflections.
 */
export const ORIENTATION_FREE_MODALITIES = new Set(['microscopy', 'histopathology', 'dermoscopy']);

/** Body regions where a mirrored image would be anatomically wrong for the model (trained without flips there). */
export const THORAX_REGIONS = new Set(['thorax']);
