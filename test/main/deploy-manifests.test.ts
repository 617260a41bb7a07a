import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigSchema } from '../../src/config/env.js';
import { ROOT } from '../helpers/project.js';

/**
 * deploy/ can only be validated here, not applied (no Docker or Kubernetes on the test machine):
 * every file parses, each environment variable is one the server knows, probes hit the server's
 * real health paths, the commands are real CLI commands, and the Redis URL names the Redis service.
 */
const docs = (f: string) => parseAllDocuments(readFileSync(path.join(ROOT, 'deploy', f), 'utf8')).map((d) => {
  expect(d.errors, f).toEqual([]);
  return d.toJS() as Record<string, any>;
});
const known = new Set(Object.keys(ConfigSchema.shape));

describe('deployment files', () => {
  it('Kubernetes manifests: names, variables, probes and commands match the server', () => {
    const all = ['k8s/redis.yaml', 'k8s/api.yaml', 'k8s/worker.yaml'].flatMap(docs);
    const byKind = (k: string) => all.filter((d) => d.kind === k);
    const services = byKind('Service').map((s) => s.metadata.name);
    expect(services).toEqual(expect.arrayContaining(['promptseg-redis', 'promptseg-api']));
    const claims = byKind('PersistentVolumeClaim').map((c) => c.metadata.name);
    for (const d of [...byKind('Deployment'), ...byKind('StatefulSet')]) {
      expect(d.spec.selector.matchLabels).toEqual(d.spec.template.metadata.labels);
      for (const c of d.spec.template.spec.containers) {
        expect(c.resources?.requests?.memory, `${d.metadata.name} requests memory`).toBeDefined();
        for (const e of c.env ?? []) {
          expect(known.has(e.name), `${e.name} is a PROMPTSEG setting`).toBe(true);
          if (e.name === 'PROMPTSEG_REDIS_URL') expect(services).toContain(new URL(e.value).hostname);
        }
        if (c.command) expect(c.command.slice(0, 3)).toEqual(['node', 'dist/main/cli.js', 'worker']);
        for (const p of [c.readinessProbe, c.livenessProbe].filter(Boolean)) if (p.httpGet) expect(['/readyz', '/healthz']).toContain(p.httpGet.path);
      }
      for (const v of d.spec.template.spec.volumes ?? []) if (v.persistentVolumeClaim) expect(claims).toContain(v.persistentVolumeClaim.claimName);
    }
  });

  it('the Compose file: services, variables and commands match the server', () => {
    const [compose] = docs('compose.yaml');
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'redis', 'worker']);
    for (const [name, s] of Object.entries(compose.services as Record<string, any>)) {
      for (const k of Object.keys(s.environment ?? {})) expect(known.has(k), `${name}: ${k}`).toBe(true);
      if (s.environment?.PROMPTSEG_REDIS_URL) expect(Object.keys(compose.services)).toContain(new URL(s.environment.PROMPTSEG_REDIS_URL).hostname);
    }
    expect(compose.services.worker.command.slice(0, 3)).toEqual(['node', 'dist/main/cli.js', 'worker']);
    expect(readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8')).toMatch(/CMD \["node", "dist\/main\/cli.js", "serve"\]/);
  });
});
