/** What the table needs of a session: a way to end it. */
export interface Closable {
  close(): Promise<void> | void;
}

export interface SessionLimits {
  /** Sessions kept in all. */
  max: number;
  /** Sessions kept per principal (token); a principal's new session evicts its own least recently used one. */
  perPrincipal: number;
  /** A session unused this long is closed. */
  idleMs: number;
}

interface Entry<S> {
  session: S;
  principal: string;
  lastUsed: number;
}

/**
 * MCP sessions bound to the principal (token) that made them, kept in least-recently-used order.
 * A session is found only by its own principal, so an id seen by someone else is worth nothing; a
 * principal over its quota evicts its own oldest session, never another's, unless the whole table
 * is full; idle sessions are swept.
 */
export class SessionTable<S extends Closable> {
  private readonly entries = new Map<string, Entry<S>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly limits: SessionLimits, private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(250, limits.idleMs / 4)));
    this.sweeper.unref();
  }

  get size(): number {
    return this.entries.size;
  }

  /** The session with this id, when the principal asking made it and it has not idled out; marks it used. */
  get(id: string, principal: string): S | undefined {
    const e = this.entries.get(id);
    if (!e || e.principal !== principal) return undefined;
    if (this.now() - e.lastUsed > this.limits.idleMs) {
      this.drop(id);
      return undefined;
    }
    e.lastUsed = this.now();
    this.entries.delete(id);
    this.entries.set(id, e);
    return e.session;
  }

  /** Makes room for a new session of this principal (evicting as the limits say). */
  reserve(principal: string): void {
    this.sweep();
    const own = [...this.entries].filter(([, e]) => e.principal === principal);
    if (own.length >= this.limits.perPrincipal) this.drop(own[0][0]);
    else if (this.entries.size >= this.limits.max) this.drop(this.entries.keys().next().value as string);
  }

  add(id: string, principal: string, session: S): void {
    this.entries.set(id, { session, principal, lastUsed: this.now() });
  }

  /** Forgets a session that closed by itself (its transport ended). */
  forget(id: string): void {
    this.entries.delete(id);
  }

  private drop(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    void Promise.resolve(e.session.close()).catch(() => undefined);
  }

  /** Closes sessions idle past the limit. */
  sweep(): void {
    const t = this.now();
    for (const [id, e] of this.entries) if (t - e.lastUsed > this.limits.idleMs) this.drop(id);
  }

  /** Closes every session (shutdown) and stops the sweeper. */
  async closeAll(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => Promise.resolve(e.session.close()).catch(() => undefined)));
  }
}
