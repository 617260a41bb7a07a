import { AsyncLocalStorage } from 'node:async_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AppFailure } from '../errors.js';

/** Why a request's work stops early: its deadline passed, or its caller went away. */
export interface StopSignal {
  signal: AbortSignal;
  /** The deadline in ms, for the message. */
  deadlineMs: number;
}

const scope = new AsyncLocalStorage<StopSignal>();

/**
 * Runs `work` with a stop signal that every checkpoint below it sees, without threading it
 * through each stage's arguments.
 */
export function runStoppable<T>(stop: StopSignal | undefined, work: () => Promise<T>): Promise<T> {
  return stop ? scope.run(stop, work) : work();
}

/**
 * Runs background work (a job that outlives the request that started it) under its own stop
 * signal, outside the scope of the request it was started from: the request's deadline does not
 * end it, and its yields still give the event loop turns.
 */
export function runDetached<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  return scope.exit(() => scope.run({ signal, deadlineMs: 0 }, work));
}

/** The stop signal of the request this code runs for, if any. */
export const currentStop = (): StopSignal | undefined => scope.getStore();

/** Throws the typed failure for a stopped request. */
export function throwIfStopped(stop: StopSignal | undefined = scope.getStore()): void {
  if (!stop?.signal.aborted) return;
  const reason = stop.signal.reason as { name?: string } | undefined;
  const timedOut = reason?.name === 'TimeoutError';
  throw new AppFailure({
    kind: 'deadline_exceeded',
    message: timedOut
      ? `the request ran past its deadline of ${stop.deadlineMs} ms (PROMPTSEG_REQUEST_TIMEOUT_MS); the remaining passes were not run: send fewer prompts, a smaller image, or fewer test-time augmentations`
      : 'the caller closed the connection or cancelled the request; the remaining passes were not run',
  });
}

/** A turn of the event loop (a no-op outside a request's scope: the CLI and eval run straight through). */
export async function yieldTurn(): Promise<void> {
  if (scope.getStore()) await nextTurn();
}

/**
 * Between two passes: gives the event loop a turn (health checks and other clients are answered
 * between long CPU stages), then stops the request if its deadline passed or its caller left.
 */
export async function checkpoint(): Promise<void> {
  const stop = scope.getStore();
  if (!stop) return;
  await nextTurn();
  throwIfStopped(stop);
}

/**
 * A stop signal for a request: its deadline from now, and the caller's own signal (disconnect, MCP
 * cancellation). Built from one controller and a plain timer rather than AbortSignal.any and
 * AbortSignal.timeout, whose composite can lose its weakly held timeout signal to garbage
 * collection on Node 20 and then never fire. `done()` clears the timer and the listener.
 */
export function requestStop(deadlineMs: number, caller?: AbortSignal): StopSignal & { done(): void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(Object.assign(new Error('deadline'), { name: 'TimeoutError' })), deadlineMs);
  timer.unref();
  const onCaller = () => ac.abort(caller?.reason ?? new Error('the caller went away'));
  if (caller?.aborted) onCaller();
  else caller?.addEventListener('abort', onCaller, { once: true });
  return {
    signal: ac.signal,
    deadlineMs,
    done: () => {
      clearTimeout(timer);
      caller?.removeEventListener('abort', onCaller);
    },
  };
}
