import { z } from 'zod';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root, found from this file whether it runs from src/ (tests) or dist/ (built). */
export const PROJECT_ROOT = path.resolve(here, '..', '..');

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
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
  PROMPTSEG_THREADS: int(2, 1),
  PROMPTSEG_MAX_BODY_BYTES: int(25 * 1024 * 1024, 1024),
  PROMPTSEG_MAX_PIXELS: int(40_000_000, 1),
  PROMPTSEG_MAX_PROMPTS: int(16, 1),
  PROMPTSEG_MAX_PROMPT_CHARS: int(200, 1),
  PROMPTSEG_REQUEST_TIMEOUT_MS: int(60_000, 100),
  PROMPTSEG_QUEUE_SIZE: int(32, 0),
  PROMPTSEG_CONCURRENCY: int(1, 1),
  PROMPTSEG_CACHE_IMAGES: int(16, 0),
  PROMPTSEG_RESULTS_KEPT: int(64, 1),
  PROMPTSEG_API_TOKENS: list,
  PROMPTSEG_CORS_ORIGINS: list,
  PROMPTSEG_ALLOWED_ROOTS: list,
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
