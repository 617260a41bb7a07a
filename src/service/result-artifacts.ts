import { err, ok, type Result } from '../core/errors.js';
import { mapToPng, maskToPng } from '../core/image/mask-encode.js';
import { entropyBits } from '../core/trust/scores.js';
import { buildDicomSeg } from '../core/image/dicom-seg.js';
import type { ServiceContext } from './context.js';

export const ARTIFACT_KINDS = ['masks', 'probability', 'uncertainty'] as const;

/**
 * A stored result's per-prompt image: the binary mask, the probability map, or the pixel
 * uncertainty map (binary entropy, 0..1 bits), each as a PNG at the image's full size.
 */
export async function getResultArtifact(ctx: ServiceContext, id: string, kind: string, index: number): Promise<Result<{ bytes: Buffer; mimeType: string; width: number; height: number }>> {
  const stored = ctx.results.get(id);
  if (!stored) return err('invalid_argument', `result ${id} is unknown or has expired (the last ${ctx.config.PROMPTSEG_RESULTS_KEPT} results are kept)`, 'result_id');
  if (!(ARTIFACT_KINDS as readonly string[]).includes(kind)) return err('invalid_argument', `unknown artifact "${kind}"; use one of ${ARTIFACT_KINDS.join(', ')}`, 'kind');
  const r = stored.result.results[index];
  if (!r) return err('invalid_argument', `result ${id} has ${stored.result.results.length} prompts; index ${index} is out of range`, 'index');
  const { width, height } = stored.result;
  let bytes: Buffer;
  if (kind === 'masks') bytes = await maskToPng(r.mask, width, height);
  else if (kind === 'probability') bytes = await mapToPng(r.probability, width, height);
  // uncertainty: the spread across paraphrases when TTA ran (scaled so 0.5 std is white), else the binary entropy
  else bytes = await mapToPng(r.ttaStd ? r.ttaStd.map((v) => Math.min(1, v * 2)) : r.probability.map((p) => entropyBits(p)), width, height);
  return ok({ bytes, mimeType: 'image/png', width, height });
}

/** One prompt's NIfTI mask of a volume result. */
export function getVolumeMask(ctx: ServiceContext, id: string, index: number): Result<{ bytes: Buffer; mimeType: string }> {
  const v = ctx.volumes.get(id);
  if (!v) return err('invalid_argument', `volume result ${id} is unknown or has expired`, 'volume_id');
  const f = v.files[index];
  if (!f) return err('invalid_argument', `volume result ${id} has ${v.files.length} prompt(s); index ${index} is out of range`, 'index');
  return ok({ bytes: f, mimeType: 'application/gzip' });
}

/** A DICOM SEG with one segment per prompt that produced a mask, referencing the source DICOM. */
export function getDicomSeg(ctx: ServiceContext, id: string, anonymize: boolean): Result<{ bytes: Buffer; mimeType: string }> {
  const stored = ctx.results.get(id);
  if (!stored) return err('invalid_argument', `result ${id} is unknown or has expired`, 'result_id');
  if (!stored.dicom) return err('invalid_argument', `result ${id} was not made from a DICOM image, so there is no series to reference`, 'result_id');
  const segments = stored.result.results
    .filter((r) => r.maskProduced)
    .map((r) => ({ label: r.structure?.name ?? r.prompt, slug: r.structure?.slug, mask: r.mask }));
  if (!segments.length) return err('invalid_argument', `result ${id} produced no masks; a DICOM SEG needs at least one segment`, 'result_id');
  const bytes = buildDicomSeg({ ...stored.dicom, rows: stored.result.height, columns: stored.result.width, spacing: stored.spacing }, segments, { anonymize });
  return ok({ bytes, mimeType: 'application/dicom' });
}
