import { logit } from '../../trust/calibration.js';
import { DEFAULT_THRESHOLDS } from '../../trust/verdict.js';
import { checkpoint } from '../cancel.js';
import { boxOf } from '../mask-box.js';
import { servedPresence, type Drawn, type Pass } from './pass.js';

const now = () => performance.now();

/**
 * Refinement, after the members are merged: a box-prompted model (SAM family) redraws each mask
 * the text model produced from the box of the mask's largest connected region (as MedCLIP-SAMv2
 * boxes its saliency: scattered high-scoring pixels elsewhere would otherwise stretch the box over
 * half the image). The mask then carries the region model's own, unscaled logits and its IoU.
 */
export const refinePass: Pass = {
  name: 'refine',
  serves: (s) => ((s.req.refine === 'none' ? undefined : (s.req.refine ?? s.run.entry.refine_with)) ? s.prompts.map((p) => p.index) : []),
  async run(s, idx) {
    const id = (s.req.refine ?? s.run.entry.refine_with)!;
    const region = s.run.ctx.registry.getRegion(id);
    const t = now();
    await region.load();
    const { cal, image } = s;
    const th = cal ? cal.thresholds.presence : DEFAULT_THRESHOLDS.presence;
    const zCut = logit(s.req.threshold ?? 0.5) * (cal ? cal.pixel_temperature : 1);
    const drawn: Drawn[] = [];
    for (const i of idx) {
      const p = s.prompts[i], look = p.members[0];
      // the presence the response will give, so a structure served as absent is not redrawn
      const box = servedPresence(s, p) >= th ? boxOf(look.logits, zCut, image.width, image.height, 0.03, { largestComponent: true }) : undefined;
      if (!box) continue;
      await checkpoint();
      const [m] = await region.segmentRegions(image, s.imageSha256, [{ box }]);
      s.prompts[i].refinedBy = { model: id, box, iou: m.iou };
      drawn.push({ prompt: i, how: 'replace', look: { ...look, logits: m.logits } });
    }
    s.run.timings.refine += now() - t;
    return drawn;
  },
};
