import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const StructureSchema = z.object({
  slug: z.string(),
  name: z.string(),
  synonyms: z.array(z.string()),
  eval_synonyms: z.array(z.string()),
  /** The modality of the structure's first training set; `modalities` lists every one it is labelled in. */
  modality: z.string(),
  modalities: z.array(z.string()).optional(),
  datasets: z.array(z.string()),
  region: z.string(),
  description: z.string(),
  parent: z.string().nullable(),
  laterality: z.string().nullable(),
  scale: z.enum(['whole', 'tiled']),
  window: z.string().nullable(),
  /** SNOMED CT [code, meaning] where the structure has one (DICOM SEG's segmented property type). */
  snomed: z.tuple([z.string(), z.string()]).nullable().optional(),
  /** Found in almost any tissue (vessels, nerves): never asked for as an absent structure. */
  never_negative: z.boolean().optional(),
});
export type Structure = z.infer<typeof StructureSchema>;

/** Words whose structure depends on the image, and per training set the structure they mean on its images. */
const WordSenseSchema = z.object({ words: z.array(z.string()), by_dataset: z.record(z.string(), z.string()) });
export type WordSense = z.infer<typeof WordSenseSchema>;

export const VocabularySchema = z.object({
  version: z.string(),
  note: z.string(),
  windows: z.record(z.string(), z.tuple([z.number(), z.number()])),
  structures: z.array(StructureSchema),
  datasets: z.array(z.object({
    id: z.string(), modality: z.string(), region: z.string(), modality_words: z.array(z.string()), structures: z.array(z.string()),
    /** Same-region structures these images never show (asked for as absent in training and evaluation). */
    extra_negatives: z.array(z.string()).optional(),
    /** Other regions' structures these images may show unlabelled (a chest CT shows vertebrae): never their absent prompts. */
    may_show: z.array(z.string()).optional(),
  })),
  templates: z.object({ train: z.array(z.string()), eval: z.array(z.string()) }),
  nonsense: z.object({ train: z.array(z.string()), eval: z.array(z.string()) }),
  /** Words for "the abnormal thing here" (lesion, tumour, mass...) and, per training set, the structure they mean on its images;
   * `shared_names`: names of structures of different images in the same words ("vessels": the retina's or a limb's), read likewise. */
  generic_words: WordSenseSchema.extend({ shared_names: z.array(WordSenseSchema).optional() }).optional(),
});
export type VocabularyData = z.infer<typeof VocabularySchema>;

/** Lower-case words with punctuation turned into spaces, for phrase matching. */
export function normalizePrompt(text: string): string {
  return ` ${text.toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^a-z0-9]+/g, ' ').trim()} `;
}

/** The structure vocabulary: names, synonyms, modalities, and which prompt names which structure. */
export class Vocabulary {
  private readonly phrases: { phrase: string; slug: string }[] = [];
  readonly bySlug = new Map<string, Structure>();

  constructor(readonly data: VocabularyData) {
    for (const s of data.structures) {
      this.bySlug.set(s.slug, s);
      for (const p of [s.name, s.slug.replace(/_/g, ' '), ...s.synonyms, ...s.eval_synonyms]) {
        const n = normalizePrompt(p);
        if (n.trim()) this.phrases.push({ phrase: n, slug: s.slug });
      }
    }
    // longest phrase first, so "left lung" wins over "lung"
    this.phrases.sort((a, b) => b.phrase.length - a.phrase.length);
  }

  static load(file: string): Vocabulary {
    return new Vocabulary(VocabularySchema.parse(JSON.parse(readFileSync(file, 'utf8'))));
  }

  static fromProject(root: string): Vocabulary {
    return Vocabulary.load(path.join(root, 'prompts', 'vocabulary.json'));
  }

  /** The structure a free-text prompt names, if any vocabulary phrase occurs in it as whole words. */
  match(prompt: string): Structure | undefined {
    return this.matchPhrase(prompt)?.structure;
  }

  /** The structure a prompt names and the (longest) phrase that named it. */
  matchPhrase(prompt: string): { structure: Structure; phrase: string } | undefined {
    const n = normalizePrompt(prompt);
    for (const p of this.phrases) if (n.includes(p.phrase)) return { structure: this.bySlug.get(p.slug)!, phrase: p.phrase };
    return undefined;
  }

  /** The structure whose name, slug or a synonym is exactly this phrase. */
  owner(phrase: string): Structure | undefined {
    const n = normalizePrompt(phrase);
    const p = this.phrases.find((x) => x.phrase === n);
    return p && this.bySlug.get(p.slug);
  }

  /** Every set of words read by the image: the generic words for a finding, then shared names. */
  private senses(): WordSense[] {
    const g = this.data.generic_words;
    return g ? [g, ...(g.shared_names ?? [])] : [];
  }

  /** The set of words a generic word or shared name belongs to. */
  private senseOf(word: string): WordSense | undefined {
    return this.senses().find((s) => s.words.includes(word));
  }

  /** The generic word (lesion, tumour, mass...) or shared name (vessels) a prompt uses in place of a structure's name, when it names no structure. */
  genericWord(prompt: string): string | undefined {
    for (const sense of this.senses()) {
      const w = this.wordOf(prompt, sense);
      if (w) return w;
    }
    return undefined;
  }

  /** The word of this set a prompt uses, if it uses one in place of a structure's name (longest first: "blood vessels" before "vessels"). */
  private wordOf(prompt: string, sense: WordSense): string | undefined {
    const given = [...sense.words].sort((a, b) => b.length - a.length);
    const words = given.map(normalizePrompt);
    // a structure's synonym that is itself a generic word ("lesion" for the skin lesion, "tumor" for
    // the FLAIR abnormality) does not settle what the word means on this image
    const m = this.matchPhrase(prompt);
    if (m && !words.includes(m.phrase)) return undefined;
    const n = normalizePrompt(prompt);
    const i = words.findIndex((w) => n.includes(w));
    if (i < 0) return undefined;
    // only the word itself in a request's phrasing ("segment the lesion in this MRI"): a qualified
    // one ("thyroid nodule", "liver lesion") names a particular structure, not the finding here
    const rest = n.replace(words[i], ' ').split(' ').filter((w) => w && !this.fillerWords().has(w));
    return rest.length ? undefined : given[i];
  }

  private filler?: Set<string>;

  /** Words of the prompt templates and modality names: the phrasing around a structure's name, not part of it. */
  private fillerWords(): Set<string> {
    if (!this.filler) {
      const text = [...this.data.templates.train, ...this.data.templates.eval, ...this.data.datasets.flatMap((d) => d.modality_words), 'please me any all visible main this that image scan picture there here'].join(' ');
      this.filler = new Set(normalizePrompt(text.replace(/\{[sm]\}/g, ' ')).split(' ').filter(Boolean));
    }
    return this.filler;
  }

  /** The structure a generic word (by default one for a finding) means on images like those of a training set, if that set has one. */
  genericMeaning(dataset: string | null, word?: string): Structure | undefined {
    const sense = word ? this.senseOf(word) : this.data.generic_words;
    const slug = dataset ? sense?.by_dataset[dataset] : undefined;
    return slug ? this.bySlug.get(slug) : undefined;
  }

  /** Every structure a generic word (by default one for a finding) can mean: one per training set that has one. */
  genericCandidates(word?: string): Structure[] {
    const sense = word ? this.senseOf(word) : this.data.generic_words;
    const slugs = [...new Set(Object.values(sense?.by_dataset ?? {}))];
    return slugs.map((s) => this.bySlug.get(s)).filter((s): s is Structure => !!s);
  }

  list(modality?: string): Structure[] {
    return this.data.structures.filter((s) => !modality || modalitiesOf(s).includes(modality));
  }

  modalities(): string[] {
    return [...new Set(this.data.structures.flatMap(modalitiesOf))].sort();
  }

  /** Structures a training set's images can be asked for as absent: those of other body regions, less
   * those its images may show unlabelled and those found in almost any tissue (training's rule). An
   * unknown set (data the vocabulary does not describe) gets every structure. */
  absentCandidates(datasetId: string): Structure[] {
    const d = this.data.datasets.find((x) => x.id === datasetId);
    if (!d) return this.data.structures;
    const shown = new Set(d.may_show ?? []);
    return this.data.structures.filter((s) => s.region !== d.region && !shown.has(s.slug) && !s.never_negative);
  }

  /**
   * Structures a dataset's images can be asked for as absent: for a training set the vocabulary
   * lists, absentCandidates; for any other (described by its images' modality and its structures'
   * slugs), the structures of other modalities, outside the regions of its structures that the
   * vocabulary knows (a fundus set's images are never asked for retinal vessels as absent).
   */
  absentFor(d: { id: string; modality: string; structures: string[] }): Structure[] {
    if (this.data.datasets.some((x) => x.id === d.id)) return this.absentCandidates(d.id);
    const regions = new Set(d.structures.map((slug) => this.bySlug.get(slug)?.region));
    return this.data.structures.filter((s) => !modalitiesOf(s).includes(d.modality) && !regions.has(s.region) && !s.never_negative);
  }
}

/** Every modality a structure is labelled in. */
export function modalitiesOf(s: Structure): string[] {
  return s.modalities ?? [s.modality];
}
