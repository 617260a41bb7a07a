import { z } from 'zod';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root, found from this file whether it runs from src/ (tests) or dist/ (built). */
export const PROJECT_ROOT = path.resolve(here, '..', '..');

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const flag = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');
const list = z
  .string()
  .default('')
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

export const ConfigSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: int(8787, 0).pipe(z.number().max(65535)),
  PROMPTSEG_MODELS_DIR: z.string().default(path.join(PROJECT_ROOT, 'models')),
  /** More manifests (comma-separated paths), e.g. models/tiny/manifest.json; each entry's dir is relative to its manifest. */
  PROMPTSEG_EXTRA_MANIFESTS: list,
  PROMPTSEG_DEFAULT_MODEL: z.string().default('promptseg-builtin'),
  /** Where adapters (structures taught from labelled images: promptseg adapt) are kept and read from. */
  PROMPTSEG_ADAPTERS_DIR: z.string().default(path.join(PROJECT_ROOT, 'adapters')),
  PROMPTSEG_THREADS: int(2, 1),
  PROMPTSEG_MAX_BODY_BYTES: int(25 * 1024 * 1024, 1024),
  PROMPTSEG_MAX_PIXELS: int(40_000_000, 1),
  /** Images over this many pixels are worked on as an area-averaged copy of this size; masks are served at the original size. */
  PROMPTSEG_WORK_MAX_PIXELS: int(4_194_304, 65_536),
  /** Largest NIfTI volume (voxels, and bytes of voxel data as stored), checked from its header before the data is inflated. */
  PROMPTSEG_MAX_VOLUME_VOXELS: int(320_000_000, 1),
  PROMPTSEG_MAX_VOLUME_BYTES: int(512 * 1024 * 1024, 1024),
  PROMPTSEG_MAX_PROMPTS: int(16, 1),
  PROMPTSEG_MAX_PROMPT_CHARS: int(200, 1),
  /** Deadline of one HTTP or MCP request, queue wait included; past it the remaining passes are not run. */
  PROMPTSEG_REQUEST_TIMEOUT_MS: int(60_000, 100),
  /** Largest segment request, in megapixel-passes (pixels x prompts x passes: request-cost.ts), refused before any work. */
  PROMPTSEG_MAX_COST: int(256, 1),
  PROMPTSEG_QUEUE_SIZE: int(32, 0),
  PROMPTSEG_CONCURRENCY: int(1, 1),
  PROMPTSEG_CACHE_IMAGES: int(16, 0),
  PROMPTSEG_RESULTS_KEPT: int(64, 1),
  /** Byte budgets: kept results (masks and 8-bit maps; volume masks have the same budget again) and decoded images for image_id. */
  PROMPTSEG_RESULTS_BYTES: int(256 * 1024 * 1024, 0),
  PROMPTSEG_IMAGE_CACHE_BYTES: int(256 * 1024 * 1024, 0),
  PROMPTSEG_API_TOKENS: list,
  PROMPTSEG_CORS_ORIGINS: list,
  PROMPTSEG_ALLOWED_ROOTS: list,
  /** Host names (besides localhost, IP literals and HOST) this server answers; '*' turns the Host check off (behind a proxy that checks it). */
  PROMPTSEG_ALLOWED_HOSTS: list,
  /** Serve /metrics without a token even when tokens are configured. */
  PROMPTSEG_PUBLIC_METRICS: flag(false),
  /** Streamable HTTP MCP without sessions: every request stands alone, so replicas behind a load balancer need no sticky routing. */
  PROMPTSEG_MCP_STATELESS: flag(false),
  /** Streamable HTTP MCP sessions: at most this many in all, per token, and idle this long before they are closed. */
  PROMPTSEG_MCP_SESSIONS: int(64, 1),
  PROMPTSEG_MCP_SESSIONS_PER_TOKEN: int(16, 1),
  PROMPTSEG_MCP_SESSION_IDLE_MS: int(30 * 60_000, 1000),
  /** On shutdown: how long open connections (MCP event streams) get before they are closed. */
  PROMPTSEG_SHUTDOWN_GRACE_MS: int(5_000, 0),
  /** The secret that keys image ids; random per process when unset (set one shared value for replicas). */
  PROMPTSEG_ID_KEY: z.string().min(16, 'PROMPTSEG_ID_KEY needs at least 16 characters').optional(),
  /** A DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) series are read from and SEGs stored to, e.g. http://pacs:8042/dicom-web; off when unset. */
  PROMPTSEG_DICOMWEB_URL: z.string().url().optional(),
  /** The Authorization header sent to it (e.g. "Bearer ..." or "Basic ..."). */
  PROMPTSEG_DICOMWEB_AUTH: z.string().optional(),
  PROMPTSEG_DICOMWEB_TIMEOUT_MS: int(30_000, 100),
  /** Redis (or Valkey) for batch jobs (`promptseg batch`, `promptseg worker`, GET /v1/batches/{id}), e.g. redis://redis:6379; off when unset. */
  PROMPTSEG_REDIS_URL: z.string().regex(/^rediss?:\/\//, 'PROMPTSEG_REDIS_URL is a redis:// or rediss:// URL').optional(),
  /** With PROMPTSEG_REDIS_URL: how long results, volume results and image_ids stay in Redis for every replica (seconds). */
  PROMPTSEG_SHARED_TTL_S: int(3600, 10),
  /** How long a batch job stays with a worker that stopped answering (killed, hung) before another takes it. */
  PROMPTSEG_BATCH_LOCK_MS: int(30_000, 500),
  PROMPTSEG_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type Config = z.infer<typeof ConfigSchema>;

/** Parses the environment once; a bad value stops start-up with a message naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const r = ConfigSchema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return r.data;
}

/** Largest MCP message accepted: a base64 image at the body limit plus room for the rest. */
export const mcpMessageLimit = (config: Config): number => Math.ceil((config.PROMPTSEG_MAX_BODY_BYTES * 4) / 3) + 1024 * 1024;
