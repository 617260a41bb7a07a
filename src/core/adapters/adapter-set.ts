import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fail } from '../errors.js';
import { normalizePrompt, type Structure, type Vocabulary } from '../vocabulary.js';
import { AdapterFileSchema, decodeFloats, decodeHeads, writeAdapterFile, type AdapterFile } from './adapter-file.js';
import type { PixelHead } from './pixel-head.js';

/** An adapter ready to serve: its file, its head, and the structure record prompts resolve to. */
export interface LoadedAdapter {
  file: AdapterFile;
  heads: PixelHead[];
  /** The support images' pooled embeddings (familiarity). */
  support: Float32Array[];
  structure: Structure;
}

/** An adapter file that is not served, and why. */
export interface RefusedAdapter {
  file: string;
  reason: string;
}

/** The phrases an adapter answers to: its name, its slug read as words, its synonyms. */
const phrasesOf = (f: Pick<AdapterFile, 'name' | 'slug' | 'synonyms'>): string[] => [...new Set([f.name, f.slug.replace(/_/g, ' '), ...f.synonyms].map(normalizePrompt).filter((p) => p.trim()))];

/** The structure record of an adapter (what results, list_structures and trust read). */
function structureOf(f: AdapterFile): Structure {
  return {
    slug: f.slug,
    name: f.name,
    synonyms: f.synonyms,
    eval_synonyms: [],
    modality: f.modality ?? 'any',
    datasets: [f.made.source.dataset],
    region: 'adapter',
    description: f.description,
    parent: null,
    laterality: null,
    scale: 'whole',
    window: null,
  };
}

/**
 * The adapters in a folder (PROMPTSEG_ADAPTERS_DIR), read when the folder changes: adapters written
 * by another process (`promptseg adapt` beside a running server) are served from the next request
 * on, and removed ones stop being served. Files that fail their checks are listed with the reason.
 */
export class AdapterSet {
  private byId = new Map<string, LoadedAdapter>();
  private refused: RefusedAdapter[] = [];
  private seen = -1;

  /** fingerprint(modelId): the sha256 of the model's files, undefined for a model this server does not have. */
  constructor(readonly dir: string, private readonly vocabulary: Vocabulary, private readonly fingerprint: (modelId: string) => string | undefined) {}

  /** Reads the folder again if it changed since the last look. */
  private refresh(): void {
    let mtime = 0;
    try {
      mtime = statSync(this.dir).mtimeMs;
    } catch {
      mtime = 0; // no folder yet: no adapters
    }
    if (mtime === this.seen) return;
    this.seen = mtime;
    const byId = new Map<string, LoadedAdapter>();
    const refused: RefusedAdapter[] = [];
    const files = mtime ? readdirSync(this.dir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).sort() : [];
    for (const name of files) {
      const why = (reason: string) => refused.push({ file: name, reason });
      let f: AdapterFile;
      try {
        const parsed = AdapterFileSchema.safeParse(JSON.parse(readFileSync(path.join(this.dir, name), 'utf8')));
        if (!parsed.success) {
          why(`not a promptseg adapter file of format version 1 (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`);
          continue;
        }
        f = parsed.data;
      } catch (e) {
        why(`not readable JSON (${(e as Error).message})`);
        continue;
      }
      if (`${f.id}.json` !== name) {
        why(`its id "${f.id}" does not match its file name`);
        continue;
      }
      const fp = this.fingerprint(f.base_model.id);
      if (fp === undefined) {
        why(`it adapts model "${f.base_model.id}", which this server does not have`);
        continue;
      }
      if (fp !== f.base_model.model_files_sha256) {
        why(`it was fitted on other files of model "${f.base_model.id}" (the model was re-exported since): adapt it again`);
        continue;
      }
      const clash = this.clash(f, byId);
      if (clash) {
        why(clash);
        continue;
      }
      try {
        byId.set(f.id, { file: f, heads: decodeHeads(f.heads), support: decodeFloats(f.familiarity.embeddings, f.familiarity.count, f.familiarity.dims), structure: structureOf(f) });
      } catch (e) {
        why((e as Error).message);
      }
    }
    this.byId = byId;
    this.refused = refused;
  }

  /** Why an adapter's names cannot be served beside the vocabulary and the other adapters, if they cannot. */
  private clash(f: Pick<AdapterFile, 'id' | 'name' | 'slug' | 'synonyms'>, others: Map<string, LoadedAdapter>): string | undefined {
    if (this.vocabulary.bySlug.has(f.slug)) return `its structure "${f.slug}" is a built-in structure`;
    for (const p of phrasesOf(f)) {
      const s = this.vocabulary.owner(p);
      if (s) return `its name or synonym "${p.trim()}" already names the built-in structure ${s.slug}`;
      for (const o of others.values()) {
        if (o.file.id === f.id) continue;
        if (o.file.slug === f.slug) return `adapter ${o.file.id} already teaches the structure "${f.slug}"`;
        if (phrasesOf(o.file).includes(p)) return `its name or synonym "${p.trim()}" already names adapter ${o.file.id}`;
      }
    }
    return undefined;
  }

  list(): LoadedAdapter[] {
    this.refresh();
    return [...this.byId.values()];
  }

  /** Adapter files in the folder that are not served, with the reason. */
  problems(): RefusedAdapter[] {
    this.refresh();
    return [...this.refused];
  }

  get(id: string): LoadedAdapter | undefined {
    this.refresh();
    return this.byId.get(id);
  }

  /** The adapter of this model that a prompt names, with the phrase (the longest of its phrases found in the prompt). */
  match(prompt: string, modelId: string): { adapter: LoadedAdapter; phrase: string } | undefined {
    this.refresh();
    if (!this.byId.size) return undefined;
    const n = normalizePrompt(prompt);
    let best: { adapter: LoadedAdapter; phrase: string } | undefined;
    for (const a of this.byId.values()) {
      if (a.file.base_model.id !== modelId) continue;
      for (const p of phrasesOf(a.file)) if (n.includes(p) && (!best || p.length > best.phrase.length)) best = { adapter: a, phrase: p };
    }
    return best;
  }

  /** Refuses (bad_input) names that collide with a built-in structure or a served adapter. */
  checkNames(f: Pick<AdapterFile, 'id' | 'name' | 'slug' | 'synonyms'>): void {
    this.refresh();
    const clash = this.clash(f, this.byId);
    if (clash) fail('bad_input', `the adapter cannot be made: ${clash}; choose another --name or --structure`, 'name');
  }

  /** Writes the adapter file (atomically) and serves it. */
  add(f: AdapterFile): LoadedAdapter {
    this.checkNames(f);
    mkdirSync(this.dir, { recursive: true });
    writeAdapterFile(this.dir, f);
    this.seen = -1;
    const a = this.get(f.id);
    if (!a) throw new Error(`adapter ${f.id} was written but is not served: ${this.refused.find((r) => r.file === `${f.id}.json`)?.reason ?? 'unknown reason'}`);
    return a;
  }

  /** Removes an adapter's file; false when there is none. */
  remove(id: string): boolean {
    const file = path.join(this.dir, `${id}.json`);
    if (!/^[a-z0-9][a-z0-9-]{0,80}$/.test(id) || !existsSync(file)) return false;
    rmSync(file);
    this.seen = -1;
    return true;
  }
}
