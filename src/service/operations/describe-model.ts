import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { defineOperation } from '../operation.js';
import { modelKind, redrawingSpecialist } from '../../core/models/manifest.js';
import { bundleGraphInputs } from '../../core/models/graph-inputs.js';
import { calibrationFor } from '../../core/pipeline/segment.js';
import { adapterSummary } from '../adapt-from-folder.js';
import { AdapterSummarySchema } from '../schemas.js';

export const describeModelOperation = defineOperation({
  name: 'describe_model',
  title: 'Describe a model (model card)',
  description: "Returns a model's manifest entry (files, input spec, licences, training summary) and its model card: data, intended use, limitations and measured figures.",
  http: { method: 'get', path: '/v1/models/{id}', pathParams: ['id'] },
  input: z.object({ id: z.string().min(1).describe('Model id from list_models.') }),
  output: z.object({
    id: z.string(),
    title: z.string(),
    runner: z.string(),
    description: z.string(),
    input: z.record(z.string(), z.unknown()),
    files: z.record(z.string(), z.object({ sha256: z.string().optional(), bytes: z.number().optional() })).describe('sha256 and size per file; hub bundles without them are checked against the hub\'s LFS sha256 when pulled.'),
    kind: z.enum(['text', 'region']).describe('text: segments from text prompts; region: from boxes and points (segment_region).'),
    refine_with: z.string().optional(),
    verified_with_real_weights: z.boolean().optional(),
    license: z.object({ code: z.string(), weights: z.string(), training_data: z.string() }),
    vocabulary_version: z.string(),
    training: z.record(z.string(), z.unknown()).optional(),
    specialists: z
      .array(
        z.object({
          name: z.string(),
          structures: z.array(z.string()),
          kind: z.enum(['fine-tuned', 'task-specific']).describe("fine-tuned: the model's image encoder and mask decoder fine-tuned on a few structures (reads the prompt's text embedding); task-specific: a U-Net trained from scratch on one dataset alone, which redraws its structures' masks from the whole image."),
          used_by_default_for: z.array(z.string()).describe('Structures whose masks it draws by default (specialist auto): those where it raised Dice on val; every structure of one that answers for them altogether.'),
          own_presence: z.boolean().describe('It answers for its structures altogether (presence, quality and mask), whatever the request: a network trained on datasets the model itself was not, for their structures.'),
          image_sets: z
            .array(z.string())
            .optional()
            .describe('Training sets it also answers for on their own images: a structure that these and sets of the model\'s own label alike (lungs on COVID-19 and on clean radiographs) is answered by the network whose set the image lies nearest (the response\'s specialist says which).'),
        }),
      )
      .optional()
      .describe('Networks beside the model that draw some structures\' masks (segment\'s specialist option): image encoders and mask decoders fine-tuned from it, or task-specific U-Nets.'),
    graph_inputs: z
      .record(z.string(), z.union([z.array(z.object({ name: z.string(), type: z.string(), shape: z.array(z.union([z.number(), z.string()])) })), z.object({ error: z.string() })]))
      .optional()
      .describe('For an installed bundle: the inputs each ONNX file declares (name, element type, shape with symbolic dimensions by name). The runners choose what to feed from these (e.g. SAM boxes only through input_boxes).'),
    adapters: z.array(AdapterSummarySchema).optional().describe('Structures taught to this model from labelled images (adapt_structure), with how each was made.'),
    card_markdown: z.string(),
  }),
  async run(ctx, input) {
    const e = ctx.pipeline.registry.entry(input.id);
    const cardPath = path.join(ctx.pipeline.registry.dirOf(e), e.card);
    const installed = ctx.pipeline.registry.installed(e);
    const adapters = (ctx.pipeline.adapters?.list() ?? []).filter((a) => a.file.base_model.id === e.id);
    const cal = calibrationFor(ctx.pipeline, e);
    // the specialist that redraws a structure under specialist 'auto': the calibration's choice
    const redrawsByDefault = (slug: string) => (cal?.specialists?.includes(slug) ? redrawingSpecialist(e, slug, cal.specialist_names?.[slug])?.name : undefined);
    return ok({
      id: e.id,
      title: e.title,
      runner: e.runner,
      kind: modelKind(e),
      ...(e.refine_with ? { refine_with: e.refine_with } : {}),
      ...(e.verified_with_real_weights !== undefined ? { verified_with_real_weights: e.verified_with_real_weights } : {}),
      description: e.description,
      input: e.input,
      files: e.files,
      license: e.license,
      vocabulary_version: e.vocabulary_version,
      training: e.training,
      ...(e.specialists?.length
        ? { specialists: e.specialists.map((sp) => ({ name: sp.name, structures: sp.structures, kind: sp.task_net ? ('task-specific' as const) : ('fine-tuned' as const), used_by_default_for: sp.own_presence ? sp.structures : sp.structures.filter((s) => redrawsByDefault(s) === sp.name), own_presence: !!sp.own_presence, ...(sp.image_sets?.length ? { image_sets: sp.image_sets } : {}) })) }
        : {}),
      ...(installed ? { graph_inputs: await bundleGraphInputs(ctx.pipeline.registry.dirOf(e), e) } : {}),
      ...(adapters.length ? { adapters: adapters.map(adapterSummary) } : {}),
      card_markdown: existsSync(cardPath) ? readFileSync(cardPath, 'utf8') : '(no model card installed)',
    });
  },
});
