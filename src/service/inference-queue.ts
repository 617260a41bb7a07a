import { fail } from '../core/errors.js';
import { currentStop, throwIfStopped } from '../core/pipeline/cancel.js';

/**
 * A bounded queue in front of inference: at most `concurrency` jobs run, at most `capacity`
 * wait; beyond that callers get `overloaded` at once instead of piling up memory.
 */
export class InferenceQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly concurrency: number, private readonly capacity: number) {}

  get depth(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.running;
  }

  /**
   * Runs job when a slot is free; rejects with `overloaded` when the queue is full or the wait
   * exceeds timeoutMs, and leaves the queue at once when the request is stopped (deadline, caller gone).
   */
  async run<T>(job: () => Promise<T>, timeoutMs: number): Promise<T> {
    const stop = currentStop();
    throwIfStopped(stop);
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.capacity) fail('overloaded', `the inference queue is full (${this.capacity} waiting); retry shortly`);
      // wait for a finishing job to hand its slot over (running stays counted)
      const handedOver = await new Promise<boolean>((resolve) => {
        const go = () => {
          clearTimeout(timer);
          stop?.signal.removeEventListener('abort', leave);
          resolve(true);
        };
        const leave = () => {
          clearTimeout(timer);
          stop?.signal.removeEventListener('abort', leave);
          const i = this.waiting.indexOf(go);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve(false);
        };
        const timer = setTimeout(leave, timeoutMs);
        stop?.signal.addEventListener('abort', leave, { once: true });
        this.waiting.push(go);
      });
      // a slot handed over is released by the finally below, even if the job then stops at once
      if (!handedOver) throwIfStopped(stop);
      if (!handedOver) fail('overloaded', `the request waited over ${timeoutMs} ms for the model; retry shortly`);
    } else {
      this.running++;
    }
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else {
        this.running--;
        if (this.running === 0) {
          const w = this.idleWaiters;
          this.idleWaiters = [];
          w.forEach((f) => f());
        }
      }
    }
  }

  /** Resolves when nothing runs or waits. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
