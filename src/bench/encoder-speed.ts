/**
 * node dist/bench/encoder-speed.js FILE.onnx...: times image-encoder graphs (such as the candidates
 * models/train/encoder_options.py exports) in onnxruntime-node with the service's session options,
 * at the built-in model's input size (its manifest entry), so an architecture can be checked against the 80 ms
 * encoder bar before it is trained. The files are timed in turn, round after round, so that a
 * busy spell of the machine falls on all of them. Prints p50/p95 per file; asserts nothing.
 */
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadConfig } from '../config/env.js';
import { sessionOptions } from '../core/models/local-bundle.js';
import { ModelRegistry } from '../core/models/registry.js';
import { fmt, machine, percentileOf } from './bench-helpers.js';

async function main(): Promise<void> {
  const files = process.argv.slice(2);
  if (!files.length) {
    process.stderr.write('usage: node dist/bench/encoder-speed.js FILE.onnx...\n');
    process.exit(2);
  }
  const config = loadConfig({ ...process.env, PROMPTSEG_LOG_LEVEL: 'silent' });
  const size = new ModelRegistry(config.PROMPTSEG_MODELS_DIR, config.PROMPTSEG_THREADS).get().entry.input.size;
  const rounds = Number(process.env.BENCH_RUNS ?? 30);
  const sessions: { file: string; session: ort.InferenceSession; feeds: Record<string, ort.Tensor>; times: number[] }[] = [];
  for (const file of files) {
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, { ...sessionOptions(config.PROMPTSEG_THREADS), executionProviders: ['cpu'] });
    } catch (e) {
      process.stderr.write(`${file}: cannot load (${(e as Error).message.split('\n')[0]})\n`);
      process.exit(1);
    }
    const name = session.inputNames[0];
    const px = Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.001));
    const feeds = { [name]: new ort.Tensor('float32', px, [1, 3, size, size]) };
    for (let i = 0; i < 3; i++) await session.run(feeds);
    sessions.push({ file, session, feeds, times: [] });
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of sessions) {
      const t = performance.now();
      await s.session.run(s.feeds);
      s.times.push(performance.now() - t);
    }
  }
  console.log(`image encoders at ${size} x ${size}, ${config.PROMPTSEG_THREADS} intra-op threads, ${rounds} rounds; machine: ${machine()}`);
  for (const s of sessions) console.log(`${path.basename(s.file).padEnd(32)} p50 ${fmt(percentileOf(s.times, 50))} ms  p95 ${fmt(percentileOf(s.times, 95))} ms`);
  for (const s of sessions) await s.session.release();
}

main().catch((e) => {
  process.stderr.write(`encoder-speed: ${(e as Error).message}\n`);
  process.exit(1);
});
