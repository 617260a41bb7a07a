import { existsSync } from 'node:fs';
import path from 'node:path';
import { fail } from '../errors.js';
import { BiomedclipRunner } from './biomedclip-runner.js';
import { ClipsegRunner } from './clipseg-runner.js';
import { loadManifest, modelKind, type Manifest, type ModelEntry } from './manifest.js';
import type { RegionMaskModel, SegmentationModel } from './model.js';
import { PromptsegOnnxRunner } from './promptseg-onnx-runner.js';
import { SamRunner } from './sam-runner.js';

/** Models named by the manifest; each runner is created on first use and then reused. */
export class ModelRegistry {
  private readonly runners = new Map<string, SegmentationModel | RegionMaskModel>();
  readonly manifest: Manifest;
  /** The folder each model's `dir` is relative to: its manifest's folder. */
  private readonly bases = new Map<string, string>();

  /**
   * modelsDir/manifest.json, plus the entries of any extra manifests (PROMPTSEG_EXTRA_MANIFESTS),
   * each entry's folder relative to its own manifest.
   */
  constructor(readonly modelsDir: string, private readonly threads: number, extraManifests: string[] = []) {
    const main = loadManifest(modelsDir);
    const models = [...main.models];
    main.models.forEach((e) => this.bases.set(e.id, modelsDir));
    for (const file of extraManifests) {
      const dir = path.dirname(path.resolve(file));
      for (const e of loadManifest(dir, path.basename(file)).models) {
        if (this.bases.has(e.id)) throw new Error(`model id "${e.id}" of ${file} is already defined`);
        this.bases.set(e.id, dir);
        models.push(e);
      }
    }
    for (const e of models) {
      if (e.refine_with && !models.some((r) => r.id === e.refine_with && modelKind(r) === 'region')) throw new Error(`model ${e.id}: refine_with "${e.refine_with}" is not a box/point model`);
    }
    if (!main.default) throw new Error(`${path.join(modelsDir, 'manifest.json')} names no default model`);
    this.manifest = { default: main.default, models };
  }

  /** The model's folder. */
  dirOf(e: ModelEntry): string {
    return path.join(this.bases.get(e.id) ?? this.modelsDir, e.dir);
  }

  /** All of the model's files are present. */
  installed(e: ModelEntry): boolean {
    const d = this.dirOf(e);
    return Object.keys(e.files).length > 0 && Object.keys(e.files).every((f) => existsSync(path.join(d, f)));
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

  private runner(entry: ModelEntry): SegmentationModel | RegionMaskModel {
    let r = this.runners.get(entry.id);
    if (!r) {
      const o = { modelsDir: this.bases.get(entry.id) ?? this.modelsDir, threads: this.threads };
      switch (entry.runner) {
        case 'promptseg-onnx':
          r = new PromptsegOnnxRunner(entry, o);
          break;
        case 'clipseg-transformers':
          r = new ClipsegRunner(entry, o);
          break;
        case 'biomedclip-onnx':
          r = new BiomedclipRunner(entry, o);
          break;
        case 'sam-transformers':
          r = new SamRunner(entry, o);
          break;
      }
      this.runners.set(entry.id, r);
    }
    return r;
  }

  /** A text-prompted model. */
  get(id: string = this.defaultId): SegmentationModel {
    const entry = this.entry(id);
    if (modelKind(entry) !== 'text') fail('invalid_argument', `model "${id}" is prompted by boxes and points, not text: use segment_region, or refine with it`, 'model');
    return this.runner(entry) as SegmentationModel;
  }

  /** A box/point-prompted model (SAM family). */
  getRegion(id: string): RegionMaskModel {
    const entry = this.entry(id);
    if (modelKind(entry) !== 'region') fail('invalid_argument', `model "${id}" is prompted by text, not boxes or points; region models: ${this.entries().filter((e) => modelKind(e) === 'region').map((e) => e.id).join(', ') || 'none'}`, 'model');
    return this.runner(entry) as RegionMaskModel;
  }

  /** The first region model of the manifest that is installed, for segment_region without a model. */
  defaultRegionId(): string | undefined {
    const region = this.entries().filter((e) => modelKind(e) === 'region');
    return (region.find((e) => this.installed(e)) ?? region[0])?.id;
  }

  loadedIds(): string[] {
    return [...this.runners.entries()].filter(([, r]) => r.loaded).map(([id]) => id);
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.runners.values()].map((r) => r.dispose()));
    this.runners.clear();
  }
}
