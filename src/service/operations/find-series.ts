import { z } from 'zod';
import { ok } from '../../core/errors.js';
import { findSeries } from '../dicomweb.js';
import { defineOperation } from '../operation.js';

export const findSeriesOperation = defineOperation({
  name: 'find_series',
  title: "Find series in the server's PACS (DICOMweb QIDO-RS)",
  description: "Lists series in the PACS this server is configured with (PROMPTSEG_DICOMWEB_URL): of one study, or matching a modality. Each comes with its Study and Series Instance UIDs, to segment with segment_volume (image.dicomweb) and, with store_seg, to store the SEG back.",
  http: { method: 'get', path: '/v1/pacs/series' },
  input: z.object({
    study_uid: z.string().regex(/^[0-9.]{1,64}$/, 'a DICOM UID: digits and dots').optional().describe('Only the series of this study.'),
    modality: z.string().regex(/^[A-Z]{1,16}$/, 'a DICOM modality code such as CT or MR').optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  }),
  output: z.object({
    series: z.array(z.object({ study_uid: z.string(), series_uid: z.string(), modality: z.string().nullable(), description: z.string().nullable(), instances: z.number().int().nullable() })),
  }),
  async run(ctx, input) {
    return ok({ series: await findSeries(ctx.config, input) });
  },
});
