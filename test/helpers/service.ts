import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/env.js';

/** Tests read adapters only from folders they make: by default one that does not exist. */
const NO_ADAPTERS = path.join(tmpdir(), `promptseg-no-adapters-${process.pid}`);
import { createServiceContext, type ServiceContext } from '../../src/service/context.js';

/** A service context on the shipped models with test-friendly overrides. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ PROMPTSEG_LOG_LEVEL: 'silent', PORT: '0', PROMPTSEG_ADAPTERS_DIR: NO_ADAPTERS, ...env });
}

export function testContext(env: Record<string, string> = {}): ServiceContext {
  return createServiceContext(testConfig(env));
}
