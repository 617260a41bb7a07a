/**
 * npm run bench:model: times the built-in model's graphs in onnxruntime-node at the shipped input
 * size: image encoder per image, and text encoder + mask decoder per extra prompt on a cached
 * image. Prints medians and p95 over repeated runs; asserts nothing.
 */
import { loadConfig } from '../config/env.js';
import { ModelRegistry } from '../core/models/registry.js';
import { fmt, machine, percentileOf } from './bench-helpers.js';

async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, PROMPTSEG_LOG_LEVEL: 'silent' });
  const reg = new ModelRegistry(config.PROMPTSEG_MODELS_DIR, config.PROMPTSEG_THREADS);
  const model = reg.get();
  await model.load();
  const s = model.entry.input.size;
  const px = new Uint8Array(3 * s * s).map((_, i) => 128 + Math.round(100 * Math.sin(i * 0.001)));
  const runs = Number(process.env.BENCH_RUNS ?? 30);
  const enc: number[] = [], txt: number[] = [], dec: number[] = [];
  let feats = await model.encodeImage(px);
  const prompts = ['left lung', 'heart', 'fetal head', 'polyp', 'retinal blood vessels', 'cell nuclei'];
  for (let i = 0; i < 3; i++) await model.decode(feats, await model.encodeText([prompts[i]]));
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    feats = await model.encodeImage(px);
    enc.push(performance.now() - t);
    const p = `${prompts[i % prompts.length]} ${i}`; // a new prompt each time: no text cache here
    t = performance.now();
    const e = await model.encodeText([p]);
    txt.push(performance.now() - t);
    t = performance.now();
    await model.decode(feats, e);
    dec.push(performance.now() - t);
  }
  const both = txt.map((v, i) => v + dec[i]);
  console.log(`built-in model ${model.entry.id}, input ${s}x${s}, ${config.PROMPTSEG_THREADS} intra-op threads, ${runs} runs`);
  console.log(`machine: ${machine()}`);
  console.log(`image encoder                     p50 ${fmt(percentileOf(enc, 50))} ms  p95 ${fmt(percentileOf(enc, 95))} ms`);
  console.log(`text encoder                      p50 ${fmt(percentileOf(txt, 50))} ms  p95 ${fmt(percentileOf(txt, 95))} ms`);
  console.log(`mask decoder                      p50 ${fmt(percentileOf(dec, 50))} ms  p95 ${fmt(percentileOf(dec, 95))} ms`);
  console.log(`text + decoder per extra prompt   p50 ${fmt(percentileOf(both, 50))} ms  p95 ${fmt(percentileOf(both, 95))} ms`);
  await reg.dispose();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
