import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { ServiceContext } from '../service/context.js';

/** How long the event loop was blocked (health checks and other clients wait that long); started with the module. */
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

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
  gauge('promptseg_process_external_memory_bytes', 'Buffers and other memory outside the V8 heap.', mem.external);
  gauge('promptseg_event_loop_delay_max_seconds', 'Longest event-loop block since start.', loopDelay.max / 1e9);
  gauge('promptseg_event_loop_delay_p99_seconds', '99th percentile of event-loop delay since start.', loopDelay.percentile(99) / 1e9);
  gauge('promptseg_queue_waiting', 'Requests waiting for the model.', ctx.queue.depth);
  gauge('promptseg_queue_active', 'Requests running on the model.', ctx.queue.active);
  gauge('promptseg_image_feature_cache_entries', 'Cached image feature sets.', ctx.pipeline.featureCache.size);
  gauge('promptseg_image_feature_cache_hits', 'Image feature cache hits since start.', ctx.pipeline.featureCache.hits);
  gauge('promptseg_image_feature_cache_misses', 'Image feature cache misses since start.', ctx.pipeline.featureCache.misses);
  gauge('promptseg_models_loaded', 'Models with sessions in memory.', ctx.pipeline.registry.loadedIds().length);
  gauge('promptseg_uptime_seconds', 'Seconds since start.', Math.round((Date.now() - ctx.startedAt) / 1000));
  return lines.join('\n') + '\n';
}
