import { err, ok, type Result } from '../core/errors.js';
import { greyToPng, maskToPng } from '../core/image/mask-encode.js';
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
  const maps = stored.maps[index];
  if (!r || !maps) return err('invalid_argument', `result ${id} has ${stored.result.results.length} prompts; index ${index} is out of range`, 'index');
  const { width, height } = stored.result;
  let bytes: Buffer;
  if (kind === 'masks') bytes = await maskToPng(r.mask, width, height);
  else if (kind === 'probability') bytes = await greyToPng(maps.probability, width, height);
  // uncertainty: the spread across paraphrases when TTA ran (scaled so 0.5 std is white), else the
  // binary entropy of the kept 8-bit probability
  else bytes = await greyToPng(maps.ttaSpread ?? entropyMap(maps.probability), width, height);
  return ok({ bytes, mimeType: 'image/png', width, height });
}

/** Binary entropy (0..1 bits) of each 8-bit probability, as grey levels: a 256-entry table. */
const ENTROPY_LEVELS = Uint8Array.from({ length: 256 }, (_, v) => Math.round(entropyBits(v / 255) * 255));
const entropyMap = (p: Uint8Array) => p.map((v) => ENTROPY_LEVELS[v]);

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
