import type { ServiceContext } from '../service/context.js';

/** Prometheus text exposition of the service's counters and gauges. */
export function renderMetrics(ctx: ServiceContext): string {
  const lines: string[] = [];
  const gauge = (name: string, help: string, v: number) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${v}`);
  for (const [k, v] of [...ctx.counters.entries()].sort()) {
    const name = `promptseg_${k.replace(/[^a-zA-Z0-9_]/g, '_')}`;
    lines.push(`# TYPE ${name} counter`, `${name} ${v}`);
  }
  const mem = process.memoryUsage();
  gauge('promptseg_process_resident_memory_bytes', 'Resident set size.', mem.rss);
  gauge('promptseg_process_heap_used_bytes', 'V8 heap in use.', mem.heapUsed);
  gauge('promptseg_queue_waiting', 'Requests waiting for the model.', ctx.queue.depth);
  gauge('promptseg_queue_active', 'Requests running on the model.', ctx.queue.active);
  gauge('promptseg_image_feature_cache_entries', 'Cached image feature sets.', ctx.pipeline.featureCache.size);
  gauge('promptseg_image_feature_cache_hits', 'Image feature cache hits since start.', ctx.pipeline.featureCache.hits);
  gauge('promptseg_image_feature_cache_misses', 'Image feature cache misses since start.', ctx.pipeline.featureCache.misses);
  gauge('promptseg_models_loaded', 'Models with sessions in memory.', ctx.pipeline.registry.loadedIds().length);
  gauge('promptseg_uptime_seconds', 'Seconds since start.', Math.round((Date.now() - ctx.startedAt) / 1000));
  return lines.join('\n') + '\n';
}
