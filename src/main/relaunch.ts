import { spawn } from 'node:child_process';

/** glibc's fixed threshold above which allocations are mmapped (and returned to the system when freed). */
const MMAP_THRESHOLD = '131072';

/**
 * On Linux, `serve` runs itself again as a child with two memory settings a long-running server
 * wants and that can only be set when a process starts: MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB,
 * so that freed image buffers go back to the system instead of staying in glibc's heap (the
 * default threshold grows after the first large free, and then a burst of uploads keeps its peak),
 * and --expose-gc, so that the server can collect once after a burst when it goes idle. The parent
 * forwards signals and exits with the child. Returns false (nothing to do) where the settings are
 * already there, on other systems, or with PROMPTSEG_RELAUNCH=0.
 */
export function relaunchWithServerMemorySettings(): Promise<number> | false {
  const gc = typeof (globalThis as { gc?: unknown }).gc === 'function';
  if (process.platform !== 'linux' || process.env.PROMPTSEG_RELAUNCH === '0' || (gc && process.env.MALLOC_MMAP_THRESHOLD_)) return false;
  const child = spawn(process.execPath, [...(gc ? [] : ['--expose-gc']), ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? MMAP_THRESHOLD, PROMPTSEG_RELAUNCH: '0' },
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}
