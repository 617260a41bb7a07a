import { fail } from '../errors.js';
import { loadManifest, type Manifest, type ModelEntry } from './manifest.js';
import type { SegmentationModel } from './model.js';
import { PromptsegOnnxRunner } from './promptseg-onnx-runner.js';

/** Models named by the manifest; each runner is created on first use and then reused. */
export class ModelRegistry {
  private readonly runners = new Map<string, SegmentationModel>();
  readonly manifest: Manifest;

  constructor(readonly modelsDir: string, private readonly threads: number) {
    this.manifest = loadManifest(modelsDir);
  }

  get defaultId(): string {
    return this.manifest.default;
  }

  entries(): ModelEntry[] {
    return this.manifest.models;
  }

  entry(id: string): ModelEntry {
    const e = this.manifest.models.find((m) => m.id === id);
    if (!e) fail('unknown_model', `no model "${id}"; known models: ${this.manifest.models.map((m) => m.id).join(', ')}`, 'model');
    return e!;
  }

  get(id: string = this.defaultId): SegmentationModel {
    const entry = this.entry(id);
    let r = this.runners.get(id);
    if (!r) {
      switch (entry.runner) {
        case 'promptseg-onnx':
          r = new PromptsegOnnxRunner(entry, { modelsDir: this.modelsDir, threads: this.threads });
          break;
      }
      this.runners.set(id, r);
    }
    return r;
  }

  loadedIds(): string[] {
    return [...this.runners.entries()].filter(([, r]) => r.loaded).map(([id]) => id);
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.runners.values()].map((r) => r.dispose()));
    this.runners.clear();
  }
}
