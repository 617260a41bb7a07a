import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { getVolumeDicomSeg } from '../result-artifacts.js';
import { renderOverlay } from '../../core/image/overlay.js';
import { storeInstances } from '../dicomweb.js';
import { fail, ok } from '../../core/errors.js';
import type { SliceAxis } from '../../core/image/nifti.js';
import { openVolume } from '../volume-source.js';
import { segment } from '../../core/pipeline/segment.js';
import { keepVolume, modelSlot, type ServiceContext } from '../context.js';
import { defineOperation } from '../operation.js';
import { DISCLAIMER, MaskThresholdSchema } from '../schemas.js';

const MAX_SLICES = 512;

export const segmentVolumeOperation = defineOperation({
  name: 'segment_volume',
  title: 'Segment a 3D volume (NIfTI or a DICOM series) slice by slice',
  description:
    'Segments each prompted structure in every slice of a NIfTI-1 volume (.nii or .nii.gz) along the chosen axis, or of a DICOM series (a folder of one file per slice, or a zip archive of one: base64, path, or over HTTP the multipart field image; ordered by position along the slice normal; CT in Hounsfield units, windowed per structure), and stacks the slice masks back into a volume. Returns per prompt the volume in mm³ (from the voxel size), the slices where the structure was found, and a NIfTI mask with the input\'s dimensions and affine (by URL / resource).',
  http: { method: 'post', path: '/v1/segment-volume' },
  input: z.object({
    image: z.object({
      base64: z.string().optional().describe('The .nii or .nii.gz file as base64.'),
      path: z.string().optional().describe('A NIfTI file, or a folder holding one DICOM series, inside the allowed roots.'),
      dicomweb: z
        .object({ study_uid: z.string().regex(/^[0-9.]{1,64}$/, 'a DICOM UID: digits and dots'), series_uid: z.string().regex(/^[0-9.]{1,64}$/, 'a DICOM UID: digits and dots') })
        .optional()
        .describe("A series in the server's PACS (PROMPTSEG_DICOMWEB_URL), fetched by WADO-RS; find_series lists them."),
    }),
    previews: z.boolean().default(false).describe('Keep a PNG of each segmented slice with the masks over it (at most 384 px), served at previews_url with the slice index: what the web page steps through.'),
    store_seg: z.boolean().default(false).describe('For a DICOM series: store its DICOM SEG in the PACS (STOW-RS) as well; stored_in_pacs says so.'),
    prompts: z.array(z.string().trim().min(1, 'a prompt is empty').max(200)).min(1, 'give at least one prompt').max(8, 'at most 8 prompts per volume'),
    axis: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(2).describe('Voxel axis to slice along (2 = k, axial for RAS volumes).'),
    slice_range: z.tuple([z.number().int().min(0), z.number().int().min(0)]).optional().describe('[first, last] slice index, inclusive; all slices when omitted.'),
    model: z.string().optional(),
    threshold: MaskThresholdSchema,
    window: z.object({ center: z.number(), width: z.number().positive() }).optional().describe('Display window in voxel units for every slice; robust percentiles of each slice by default.'),
  }),
  output: z.object({
    volume_id: z.string(),
    model: z.string(),
    dims: z.tuple([z.number(), z.number(), z.number()]),
    spacing_mm: z.tuple([z.number(), z.number(), z.number()]),
    axis: z.number().int(),
    slices: z.tuple([z.number().int(), z.number().int()]),
    results: z.array(z.object({
      index: z.number().int(),
      prompt: z.string(),
      structure: z.string().nullable(),
      voxels: z.number().int(),
      volume_mm3: z.number(),
      slices_present: z.array(z.number().int()).describe('Slice indices whose mask is not empty.'),
      max_presence: z.number(),
      verdicts: z.object({ accept: z.number().int(), review: z.number().int(), reject: z.number().int() }).describe('How many slices got each verdict.'),
      mask_url: z.string(),
      mask_uri: z.string(),
    })),
    timings_ms: z.object({ total: z.number() }),
    dicom_seg_url: z.string().optional().describe('For a DICOM series: a DICOM SEG of every mask, referencing each source instance (add ?anonymize=true to replace patient identifiers).'),
    dicom_seg_uri: z.string().optional(),
    previews_url: z.string().optional().describe('With previews: the URL of slice k\'s preview is this with {k} replaced.'),
    stored_in_pacs: z.object({ instances: z.number().int() }).optional().describe('Set when store_seg stored the SEG in the PACS.'),
    disclaimer: z.string(),
  }),
  async run(ctx, input, extras) {
    if (input.model !== undefined) ctx.pipeline.registry.entry(input.model);
    // store_seg is refused before any slice is segmented: it needs a PACS, and a series (a SEG references its source instances)
    if (input.store_seg && !ctx.config.PROMPTSEG_DICOMWEB_URL) fail('invalid_argument', 'store_seg needs a PACS: this server has none (set PROMPTSEG_DICOMWEB_URL)', 'store_seg');
    const t0 = performance.now();
    const axis = input.axis as SliceAxis;
    const vol = await openVolume(ctx, input.image, keptVoxels(axis, input.slice_range), extras?.upload, extras?.uploads);
    if (input.store_seg && !vol.series) fail('invalid_argument', 'store_seg needs a DICOM series (a SEG references its source instances)', 'store_seg');
    const [first, last] = sliceRange(vol.dims[axis], axis, input.slice_range);
    const { masks, per, modelId, previews } = await segmentSlices(ctx, vol, input, axis, first, last, extras?.progress);
    const id = randomUUID();
    const files: Buffer[] = [];
    for (const [i, m] of masks.entries()) files.push(await vol.write(m, `promptseg mask: ${input.prompts[i]}`));
    // a series keeps its masks per instance for its SEG (only prompts that drew something)
    const seg = vol.series
      ? {
          series: vol.series.seg,
          segments: masks
            .map((m, i) => ({ label: input.prompts[i], slug: per[i].structure ?? undefined, description: `promptseg slices: ${per[i].verdicts.accept} accept, ${per[i].verdicts.review} review, ${per[i].verdicts.reject} reject`, slices: vol.series!.slices(m) }))
            .filter((x, i) => per[i].slices.length > 0),
        }
      : undefined;
    await keepVolume(ctx, { id, createdAt: Date.now(), files, ...(input.previews ? { previews } : {}), ...(seg?.segments.length ? { seg } : {}) });
    const voxelMm3 = vol.spacing[0] * vol.spacing[1] * vol.spacing[2];
    let stored: { instances: number } | undefined;
    if (input.store_seg) {
      if (!seg?.segments.length) fail('invalid_argument', 'no prompt found its structure in the series, so there is no SEG to store', 'store_seg');
      const built = await getVolumeDicomSeg(ctx, id, false);
      if (!built.ok) return built;
      stored = { instances: (await storeInstances(ctx.config, [built.value.bytes])).stored };
    }
    return ok({
      volume_id: id,
      model: modelId,
      dims: vol.dims,
      spacing_mm: vol.spacing,
      axis,
      slices: [first, last] as [number, number],
      results: masks.map((m, i) => {
        const voxels = m.data.reduce((s, v) => s + v, 0);
        return {
          index: i,
          prompt: input.prompts[i],
          structure: per[i].structure,
          voxels,
          volume_mm3: Math.round(voxels * voxelMm3 * 1000) / 1000,
          slices_present: per[i].slices,
          max_presence: Math.round(per[i].maxPresence * 1e4) / 1e4,
          verdicts: per[i].verdicts,
          mask_url: `/v1/volumes/${id}/masks/${i}.nii.gz`,
          mask_uri: `promptseg://volumes/${id}/masks/${i}.nii.gz`,
        };
      }),
      timings_ms: { total: Math.round(performance.now() - t0) },
      ...(seg?.segments.length ? { dicom_seg_url: `/v1/volumes/${id}/dicom-seg`, dicom_seg_uri: `promptseg://volumes/${id}/dicom-seg` } : {}),
      ...(input.previews ? { previews_url: `/v1/volumes/${id}/previews/{k}.png` } : {}),
      ...(stored ? { stored_in_pacs: stored } : {}),
      disclaimer: DISCLAIMER,
    });
  },
});

type Volume = Awaited<ReturnType<typeof openVolume>>;
/** What the slice loop reads of the request. */
interface SliceRequest {
  prompts: string[];
  model?: string;
  threshold?: z.infer<typeof MaskThresholdSchema>;
  window?: { center: number; width: number };
  previews: boolean;
}

/** What a prompt found over the slices: where its mask is not empty, its highest presence, the verdict counts and the structure it resolved to. */
interface PromptTally {
  slices: number[];
  maxPresence: number;
  verdicts: { accept: number; review: number; reject: number };
  structure: string | null;
}

/** Along k the slices asked for are one contiguous run of voxels: the voxel range to keep of a volume of dims d (undefined: keep all). */
function keptVoxels(axis: SliceAxis, range: [number, number] | undefined): ((d: [number, number, number]) => [number, number]) | undefined {
  if (axis !== 2 || !range) return undefined;
  return (d) => {
    const from = Math.min(range[0], d[2]);
    return [from * d[0] * d[1], Math.max(from, Math.min(range[1] + 1, d[2])) * d[0] * d[1]];
  };
}

/** The first and last slice asked for (all n by default), refused when outside the volume or over MAX_SLICES. */
function sliceRange(n: number, axis: SliceAxis, range: [number, number] | undefined): [number, number] {
  const [first, last] = range ?? [0, n - 1];
  if (first > last || last >= n) fail('invalid_argument', `slice_range [${first}, ${last}] is outside 0..${n - 1} along axis ${axis}`, 'slice_range');
  if (last - first + 1 > MAX_SLICES) fail('invalid_argument', `${last - first + 1} slices asked; at most ${MAX_SLICES} per request (use slice_range)`, 'slice_range');
  return [first, last];
}

/** Segments every slice first..last with all the prompts, placing each slice mask in its prompt's slab (only the slices asked for are held). */
async function segmentSlices(ctx: ServiceContext, vol: Volume, input: SliceRequest, axis: SliceAxis, first: number, last: number, progress?: (done: number, total: number, label: string) => void) {
  const masks = input.prompts.map(() => vol.slab(axis, first, last));
  const per: PromptTally[] = input.prompts.map(() => ({ slices: [], maxPresence: 0, verdicts: { accept: 0, review: 0, reject: 0 }, structure: null }));
  let modelId = '';
  const previews: { slice: number; png: Buffer }[] = [];
  for (let k = first; k <= last; k++) {
    const img = vol.slice(axis, k, input.window ? [input.window.center, input.window.width] : undefined);
    const res = await segment(ctx.pipeline, { image: img, prompts: input.prompts, modelId: input.model, threshold: input.threshold }, modelSlot(ctx));
    modelId = res.modelId;
    res.results.forEach((r, i) => {
      vol.place(masks[i], k, r.mask);
      if (r.stats.areaPx > 0) per[i].slices.push(k);
      per[i].maxPresence = Math.max(per[i].maxPresence, r.presence);
      per[i].verdicts[r.verdict]++;
      per[i].structure = r.structure?.slug ?? null;
    });
    if (input.previews) previews.push({ slice: k, png: await renderOverlay(img, res.results.map((r) => r.mask), 384) });
    progress?.(k - first + 1, last - first + 1, `slice ${k}`);
  }
  return { masks, per, modelId, previews };
}
