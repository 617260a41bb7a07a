import { statSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelEntry } from './manifest.js';

/** One declared input of an ONNX graph: name, element type and shape (symbolic dims by name). */
export interface GraphInput {
  name: string;
  type: string;
  shape: (number | string)[];
}

const cache = new Map<string, GraphInput[]>();

/**
 * The inputs an ONNX file declares, read by opening it in onnxruntime without graph optimisation
 * (remembered per file, size and modification time). What the runners feed is chosen from these,
 * so showing them lets a user check a downloaded export against what the runner expects.
 */
export async function graphInputs(file: string): Promise<GraphInput[]> {
  const st = statSync(file);
  const key = `${file}:${st.size}:${st.mtimeMs}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const session = await ort.InferenceSession.create(file, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, interOpNumThreads: 1, executionProviders: ['cpu'] });
  try {
    const meta = session.inputMetadata;
    const inputs = session.inputNames.map((name) => {
      const m = meta?.find((x) => x.name === name);
      return m && m.isTensor ? { name, type: String(m.type), shape: [...m.shape] } : { name, type: 'unknown', shape: [] };
    });
    cache.set(key, inputs);
    return inputs;
  } finally {
    await session.release();
  }
}

/** Every ONNX file of an installed bundle with its declared inputs; files that do not open are reported by their error. */
export async function bundleGraphInputs(dir: string, entry: ModelEntry): Promise<Record<string, GraphInput[] | { error: string }>> {
  const out: Record<string, GraphInput[] | { error: string }> = {};
  for (const f of Object.keys(entry.files).filter((f) => f.endsWith('.onnx'))) {
    try {
      out[f] = await graphInputs(path.join(dir, f));
    } catch (e) {
      out[f] = { error: (e as Error).message.split('\n')[0] };
    }
  }
  return out;
}

/** "input_points float32 [batch_size, point_batch_size, nb_points_per_image, 2]" */
export const formatGraphInput = (i: GraphInput): string => `${i.name} ${i.type} [${i.shape.join(', ')}]`;
