import { answeringNetworks, type ModelEntry } from '../models/manifest.js';
import { oodScore, type OodStats } from '../trust/calibration.js';
import type { Structure } from '../vocabulary.js';

/**
 * Structures that two of a model's networks answer for, each on its own kind of image: the lungs
 * on clean radiographs (the model's own network, trained on them) and on COVID-19 radiographs (the
 * all-datasets network, whose `image_sets` include them). Returns, per training set that labels the
 * structure, the network that answers on images nearest that set ('' the model's own); undefined
 * when one network answers everywhere.
 */
export function networksBySet(entry: ModelEntry, structure: Structure | undefined): Map<string, string> | undefined {
  if (!structure) return undefined;
  const own = answeringNetworks(entry);
  if (!own.length || own.some((sp) => sp.structures.includes(structure.slug))) return undefined;
  const bySet = new Map(structure.datasets.map((d) => [d, own.find((sp) => sp.image_sets?.includes(d))?.name ?? '']));
  return new Set(bySet.values()).size > 1 ? bySet : undefined;
}

/**
 * The network that answers for the structure on this image: that of the training set, among those
 * that label the structure, whose images the pooled embedding lies nearest (k-NN statistics of the
 * calibration, ratio to each set's radius); the model's own ('') when no statistics hold those sets.
 * However far the image lies from all of them: the nearest set's network is the one trained on the
 * most similar images, and a bound at the flag threshold routes every val image the same way.
 */
export function networkForImage(bySet: Map<string, string>, embedding: Float32Array, stats: OodStats): string {
  const { nearest } = oodScore(embedding, stats, new Set(bySet.keys()));
  return bySet.get(nearest) ?? '';
}
