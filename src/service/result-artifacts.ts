import { err, ok, type Result } from '../core/errors.js';
import { greyToPng, maskToPng, toGreyLevels } from '../core/image/mask-encode.js';
import { mapGrid } from '../core/image/resize.js';
import { probabilityMap } from '../core/pipeline/mask-result.js';
import { upscaleMask } from '../core/image/working-resolution.js';
import { entropyBits } from '../core/trust/scores.js';
import { buildDicomSeg, buildSeriesDicomSeg } from '../core/image/dicom-seg.js';
import { storedResultOf, storedVolumeOf, type ServiceContext } from './context.js';

export const ARTIFACT_KINDS = ['masks', 'probability', 'uncertainty'] as const;

/**
 * A stored result's per-prompt image: the binary mask, the probability map, or the pixel
 * uncertainty map (binary entropy, 0..1 bits), each as a PNG at the image's full size.
 */
export async function getResultArtifact(ctx: ServiceContext, id: string, kind: string, index: number): Promise<Result<{ bytes: Buffer; mimeType: string; width: number; height: number }>> {
  const stored = await storedResultOf(ctx, id);
  if (!stored) return err('invalid_argument', `result ${id} is unknown or has expired (the last ${ctx.config.PROMPTSEG_RESULTS_KEPT} results are kept)`, 'result_id');
  if (!(ARTIFACT_KINDS as readonly string[]).includes(kind)) return err('invalid_argument', `unknown artifact "${kind}"; use one of ${ARTIFACT_KINDS.join(', ')}`, 'kind');
  const r = stored.result.results[index];
  const maps = stored.maps[index];
  if (!r || !maps) return err('invalid_argument', `result ${id} has ${stored.result.results.length} prompts; index ${index} is out of range`, 'index');
  const { width: w, height: h } = stored.result;
  // a result made on a working copy is served at the size that was sent: masks by nearest
  // neighbour (as its statistics were counted), maps resampled smoothly
  const { width, height } = stored.original ?? stored.result;
  const size = stored.original ? { width, height } : undefined;
  // a probability map kept as the model's grid is drawn now, as it would have been when the result was made
  const probability = () => maps.probability ?? toGreyLevels(probabilityMap({ logits: mapGrid(maps.source!.grid.grid, maps.source!.grid.gridSpan, w, h, maps.source!.grid.place), temperature: maps.source!.temperature }));
  let bytes: Buffer;
  if (kind === 'masks') bytes = await maskToPng(size ? upscaleMask(r.mask, w, h, width, height) : r.mask, width, height);
  else if (kind === 'probability') bytes = await greyToPng(probability(), w, h, size);
  // uncertainty: the spread across paraphrases when TTA ran (scaled so 0.5 std is white), else the
  // binary entropy of the kept 8-bit probability
  else bytes = await greyToPng(maps.ttaSpread ?? entropyMap(probability()), w, h, size);
  return ok({ bytes, mimeType: 'image/png', width, height });
}

/** Binary entropy (0..1 bits) of each 8-bit probability, as grey levels: a 256-entry table. */
const ENTROPY_LEVELS = Uint8Array.from({ length: 256 }, (_, v) => Math.round(entropyBits(v / 255) * 255));
const entropyMap = (p: Uint8Array) => p.map((v) => ENTROPY_LEVELS[v]);

/** A DICOM SEG of a volume result made from a DICOM series: a frame per segment and slice where it was found. */
export async function getVolumeDicomSeg(ctx: ServiceContext, id: string, anonymize: boolean): Promise<Result<{ bytes: Buffer; mimeType: string }>> {
  const v = await storedVolumeOf(ctx, id);
  if (!v) return err('invalid_argument', `volume result ${id} is unknown or has expired`, 'volume_id');
  if (!v.seg) return err('invalid_argument', `volume result ${id} was not made from a DICOM series or found nothing, so there is no DICOM SEG`, 'volume_id');
  const vocab = ctx.pipeline.vocabulary;
  const bytes = buildSeriesDicomSeg(v.seg.series, v.seg.segments.map((s) => ({ ...s, label: s.slug ? (vocab.bySlug.get(s.slug)?.name ?? s.label) : s.label, snomed: s.slug ? vocab.bySlug.get(s.slug)?.snomed : undefined })), { anonymize, version: ctx.version });
  return ok({ bytes, mimeType: 'application/dicom' });
}

/** The preview PNG of one slice of a volume result (segment_volume with previews). */
export async function getVolumePreview(ctx: ServiceContext, id: string, slice: number): Promise<Result<{ bytes: Buffer; mimeType: string }>> {
  const v = await storedVolumeOf(ctx, id);
  if (!v) return err('invalid_argument', `volume result ${id} is unknown or has expired`, 'volume_id');
  if (!v.previews) return err('invalid_argument', `volume result ${id} was made without previews (ask segment_volume with previews: true)`, 'volume_id');
  const p = v.previews.find((x) => x.slice === slice);
  if (!p) return err('invalid_argument', `volume result ${id} has no slice ${slice}; its slices are ${v.previews[0]?.slice}..${v.previews.at(-1)?.slice}`, 'file');
  return ok({ bytes: p.png, mimeType: 'image/png' });
}

/** One prompt's NIfTI mask of a volume result. */
export async function getVolumeMask(ctx: ServiceContext, id: string, index: number): Promise<Result<{ bytes: Buffer; mimeType: string }>> {
  const v = await storedVolumeOf(ctx, id);
  if (!v) return err('invalid_argument', `volume result ${id} is unknown or has expired`, 'volume_id');
  const f = v.files[index];
  if (!f) return err('invalid_argument', `volume result ${id} has ${v.files.length} prompt(s); index ${index} is out of range`, 'index');
  return ok({ bytes: f, mimeType: 'application/gzip' });
}

/** A DICOM SEG with one segment per prompt that produced a mask, referencing the source DICOM. */
export async function getDicomSeg(ctx: ServiceContext, id: string, anonymize: boolean): Promise<Result<{ bytes: Buffer; mimeType: string }>> {
  const stored = await storedResultOf(ctx, id);
  if (!stored) return err('invalid_argument', `result ${id} is unknown or has expired`, 'result_id');
  if (!stored.dicom) return err('invalid_argument', `result ${id} was not made from a DICOM image, so there is no series to reference`, 'result_id');
  const { width: w, height: h } = stored.result;
  const { width, height } = stored.original ?? stored.result;
  const segments = stored.result.results
    .filter((r) => r.maskProduced)
    .map((r) => ({
      label: r.structure?.name ?? r.prompt,
      slug: r.structure?.slug,
      snomed: r.structure ? ctx.pipeline.vocabulary.bySlug.get(r.structure.slug)?.snomed : undefined,
      // the trust verdict where a reader of the SEG sees it: the segment's description
      description: `promptseg ${r.verdict}, presence ${r.presence.toFixed(2)}${r.reasons.length ? `: ${r.reasons.map((x) => x.code).join(', ')}` : ''}`,
      mask: stored.original ? upscaleMask(r.mask, w, h, width, height) : r.mask,
    }));
  if (!segments.length) return err('invalid_argument', `result ${id} produced no masks; a DICOM SEG needs at least one segment`, 'result_id');
  // the SEG's frames match the source image's rows and columns
  const bytes = buildDicomSeg({ ...stored.dicom, rows: height, columns: width, spacing: stored.spacing }, segments, { anonymize, version: ctx.version, model: stored.result.modelId });
  return ok({ bytes, mimeType: 'application/dicom' });
}
