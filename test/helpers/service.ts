import { loadConfig, type Config } from '../../src/config/env.js';
import { createServiceContext, type ServiceContext } from '../../src/service/context.js';

/** A service context on the shipped models with test-friendly overrides. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ PROMPTSEG_LOG_LEVEL: 'silent', PORT: '0', ...env });
}

export function testContext(env: Record<string, string> = {}): ServiceContext {
  return createServiceContext(testConfig(env));
}
