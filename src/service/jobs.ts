import { randomBytes } from 'node:crypto';
import type { AppError } from '../core/errors.js';

/** A long operation run in the background (an adaptation), as callers see it. */
export interface Job {
  id: string;
  kind: 'adapt';
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  progress: { done: number; total: number; message: string };
  created_at: string;
  finished_at?: string;
  /** What the job made (for an adaptation: the adapter's id and figures). */
  result?: Record<string, unknown>;
  error?: AppError;
}

/** Where jobs are kept: one interface, so a shared store for several replicas is one more implementation. */
export interface JobStore {
  create(kind: Job['kind']): Job;
  update(id: string, patch: Partial<Omit<Job, 'id' | 'kind' | 'created_at'>>): void;
  get(id: string): Job | undefined;
}

/** Jobs in this process: the newest `keep` are kept, running ones always. */
export class MemoryJobStore implements JobStore {
  private jobs = new Map<string, Job>();

  constructor(private readonly keep = 200) {}

  create(kind: Job['kind']): Job {
    const job: Job = { id: `job_${randomBytes(12).toString('hex')}`, kind, status: 'queued', progress: { done: 0, total: 1, message: 'queued' }, created_at: new Date().toISOString() };
    this.jobs.set(job.id, job);
    for (const [id, j] of this.jobs) {
      if (this.jobs.size <= this.keep) break;
      if (j.status === 'succeeded' || j.status === 'failed') this.jobs.delete(id);
    }
    return { ...job };
  }

  update(id: string, patch: Partial<Omit<Job, 'id' | 'kind' | 'created_at'>>): void {
    const j = this.jobs.get(id);
    if (j) Object.assign(j, patch);
  }

  get(id: string): Job | undefined {
    const j = this.jobs.get(id);
    return j && structuredClone(j);
  }
}

/**
 * Jobs of this process, each change also written to the store replicas share, so that any replica
 * answers get_job for a job another one runs. Writes go out in order on one connection and are not
 * awaited (an adaptation's progress must not wait on Redis); a failed write is retried by the next.
 */
export class SharedJobStore implements JobStore {
  private readonly local = new MemoryJobStore();

  constructor(private readonly shared: { put(kind: 'job', id: string, value: unknown): Promise<void> }) {}

  private mirror(id: string): void {
    const j = this.local.get(id);
    if (j) this.shared.put('job', id, j).catch(() => undefined);
  }

  create(kind: Job['kind']): Job {
    const job = this.local.create(kind);
    this.mirror(job.id);
    return job;
  }

  update(id: string, patch: Partial<Omit<Job, 'id' | 'kind' | 'created_at'>>): void {
    this.local.update(id, patch);
    this.mirror(id);
  }

  get(id: string): Job | undefined {
    return this.local.get(id);
  }
}
