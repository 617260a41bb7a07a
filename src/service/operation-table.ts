import type { Operation } from './operation.js';
import { assessSegmentationOperation } from './operations/assess-segmentation.js';
import { comparePromptsOperation } from './operations/compare-prompts.js';
import { describeModelOperation } from './operations/describe-model.js';
import { healthOperation } from './operations/health.js';
import { listModelsOperation } from './operations/list-models.js';
import { listStructuresOperation } from './operations/list-structures.js';
import { segmentOperation } from './operations/segment.js';
import { segmentVolumeOperation } from './operations/segment-volume.js';
import { segmentRegionOperation } from './operations/segment-region.js';
import { adaptStructureOperation } from './operations/adapt-structure.js';
import { getJobOperation } from './operations/get-job.js';
import { getBatchOperation } from './operations/get-batch.js';
import { listAdaptersOperation } from './operations/list-adapters.js';
import { deleteAdapterOperation } from './operations/delete-adapter.js';
import { findSeriesOperation } from './operations/find-series.js';

/** Every operation of the service; HTTP routes and MCP tools are generated from this list. */
export const OPERATIONS: Operation[] = [
  segmentOperation,
  segmentVolumeOperation,
  segmentRegionOperation,
  findSeriesOperation,
  assessSegmentationOperation,
  comparePromptsOperation,
  listModelsOperation,
  describeModelOperation,
  listStructuresOperation,
  adaptStructureOperation,
  getJobOperation,
  getBatchOperation,
  listAdaptersOperation,
  deleteAdapterOperation,
  healthOperation,
] as unknown as Operation[];

export const operationByName = (name: string): Operation | undefined => OPERATIONS.find((o) => o.name === name);
