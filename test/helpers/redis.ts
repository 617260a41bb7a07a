import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/bench/bench-helpers.js';

/** Why Redis tests cannot run here, or undefined (Debian package redis-server; .ci/run installs it). */
export const noRedis = spawnSync('redis-server', ['--version']).error !== undefined ? 'redis-server is not installed (Debian package redis-server)' : undefined;


/** A real redis-server on a free loopback port, its data (append-only file) in a temporary folder; restartable on the same port and data. */
export class TestRedis {
  private proc?: ChildProcess;
  private constructor(readonly port: number, readonly dir: string) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<TestRedis> {
    const r = new TestRedis(await freePort(), mkdtempSync(path.join(tmpdir(), 'promptseg-redis-')));
    await r.up();
    return r;
  }

  async up(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (spawnSync('redis-cli', ['-p', String(this.port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  /** Stops the server (its append-only file keeps the data for the next up()). */
  async down(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  }
}
