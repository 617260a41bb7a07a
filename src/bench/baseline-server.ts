/**
 * Another commit's server, for measuring against it in the same run: a git worktree of the commit
 * (under the system's temp folder, reused between runs), built with this checkout's node_modules,
 * started as a child process on a free loopback port.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../config/env.js';
import { freePort } from './bench-helpers.js';


export async function startBaselineServer(commit: string, env: Record<string, string>): Promise<{ url: string; sha: string; close: () => void } | { skipped: string }> {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let sha: string;
  try {
    sha = git('rev-parse', '--verify', `${commit}^{commit}`);
  } catch {
    return { skipped: `BENCH_BASELINE=${commit} is not a commit of this repository` };
  }
  const dir = path.join(os.tmpdir(), `promptseg-baseline-${sha.slice(0, 12)}`);
  if (!existsSync(path.join(dir, 'dist', 'main', 'cli.js'))) {
    if (!existsSync(dir)) git('worktree', 'add', '--detach', dir, sha);
    if (!existsSync(path.join(dir, 'node_modules'))) symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    mkdirSync(path.join(dir, 'dist'), { recursive: true });
    execFileSync(process.execPath, [path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dir, stdio: 'inherit' });
  }
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [path.join(dir, 'dist', 'main', 'cli.js'), 'serve'], {
    cwd: dir,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', PROMPTSEG_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return { url, sha, close: () => child.kill('SIGTERM') };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  return { skipped: `the server of ${sha.slice(0, 12)} did not become ready in 60 s` };
}
