import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SessionTable } from '../../src/mcp/session-table.js';
import { startServer } from '../../src/main/serve.js';
import { ROOT } from '../helpers/project.js';
import { testConfig } from '../helpers/service.js';

/** A session that records whether it was closed. */
const session = (name: string) => ({ name, closed: false, close() { this.closed = true; } });

describe('MCP session table', () => {
  it('finds a session only for the principal that made it', () => {
    const t = new SessionTable({ max: 8, perPrincipal: 4, idleMs: 60_000 });
    const a = session('a');
    t.add('id-a', 'token-a', a);
    expect(t.get('id-a', 'token-a')).toBe(a);
    expect(t.get('id-a', 'token-b')).toBeUndefined();
    void t.closeAll();
  });

  it('a principal over its quota evicts its own least recently used session, never another\'s', () => {
    const t = new SessionTable({ max: 64, perPrincipal: 3, idleMs: 60_000 });
    const victim = session('victim');
    t.add('v', 'token-v', victim);
    const own = [0, 1, 2].map((i) => session(`b${i}`));
    own.forEach((s, i) => {
      t.reserve('token-b');
      t.add(`b${i}`, 'token-b', s);
    });
    t.get('b0', 'token-b'); // b0 used last: b1 is now the least recently used
    for (let i = 3; i < 70; i++) {
      t.reserve('token-b');
      t.add(`b${i}`, 'token-b', session(`b${i}`));
    }
    expect(victim.closed).toBe(false);
    expect(t.get('v', 'token-v')).toBe(victim);
    expect(own[1].closed).toBe(true);
    expect(t.size).toBe(4);
    void t.closeAll();
  });

  it('when the whole table is full, the least recently used session goes; idle sessions are closed', () => {
    let now = 0;
    const t = new SessionTable({ max: 2, perPrincipal: 2, idleMs: 1000 }, () => now);
    const [x, y, z] = [session('x'), session('y'), session('z')];
    t.add('x', 'p1', x);
    t.add('y', 'p2', y);
    now = 10;
    t.get('x', 'p1');
    t.reserve('p3');
    t.add('z', 'p3', z);
    expect(y.closed).toBe(true);
    expect(x.closed).toBe(false);
    now = 2000;
    expect(t.get('x', 'p1')).toBeUndefined();
    expect(x.closed).toBe(true);
    t.sweep();
    expect(z.closed).toBe(true);
    void t.closeAll();
  });
});

const INIT = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe('Streamable HTTP sessions on the server', () => {
  it('a session made with one token is unknown to another', async () => {
    const srv = await startServer(testConfig({ PROMPTSEG_API_TOKENS: 'tok-a,tok-b' }), { log: false, warm: false });
    try {
      const init = await fetch(`${srv.url}/mcp`, { method: 'POST', body: INIT, headers: { ...HEADERS, authorization: 'Bearer tok-a' } });
      expect(init.status).toBe(200);
      const sid = init.headers.get('mcp-session-id')!;
      await init.text();
      const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
      const asB = await fetch(`${srv.url}/mcp`, { method: 'POST', body: list, headers: { ...HEADERS, authorization: 'Bearer tok-b', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' } });
      expect(asB.status).toBe(404);
      const asA = await fetch(`${srv.url}/mcp`, { method: 'POST', body: list, headers: { ...HEADERS, authorization: 'Bearer tok-a', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' } });
      expect(asA.status).toBe(200);
      await asA.text();
    } finally {
      await srv.close();
    }
  });

  it('shutdown ends an open event stream instead of waiting for the client', { timeout: 20_000 }, async () => {
    const srv = await startServer(testConfig({ PROMPTSEG_SHUTDOWN_GRACE_MS: '200' }), { log: false, warm: false });
    const init = await fetch(`${srv.url}/mcp`, { method: 'POST', body: INIT, headers: HEADERS });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    const h = { ...HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
    await (await fetch(`${srv.url}/mcp`, { method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), headers: h })).text();
    const stream = await fetch(`${srv.url}/mcp`, { method: 'GET', headers: { ...h, accept: 'text/event-stream' } });
    expect(stream.status).toBe(200);
    const reading = (async () => {
      try {
        for await (const _ of stream.body as AsyncIterable<Uint8Array>) void _;
      } catch {
        // a cut connection ends the stream too
      }
      return 'ended';
    })();
    await srv.close();
    expect(await reading).toBe('ended');
  });
});

describe('stdio MCP', () => {
  it('answers an oversized message with a JSON-RPC error before it exits', { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'main', 'cli.js'), 'mcp'], {
      env: { ...process.env, PROMPTSEG_MAX_BODY_BYTES: '4096', PROMPTSEG_LOG_LEVEL: 'silent' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.stdin.on('error', () => undefined); // the server stops reading once the message is over the limit
    child.stdin.write('{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"' + 'x'.repeat(2_000_000));
    const code = await exited;
    const frames = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { error?: { code: number; message: string } });
    expect(frames.at(-1)?.error?.code).toBe(-32600);
    expect(frames.at(-1)?.error?.message).toMatch(/over the limit of \d+ bytes/);
    expect(code).toBe(1);
  });
});
