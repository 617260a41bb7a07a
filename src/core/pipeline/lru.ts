/** Optional byte accounting for an Lru: what one value weighs, and how much all may weigh together. */
export interface LruBytes<V> {
  maxBytes: number;
  sizeOf: (value: V) => number;
}

/**
 * A least-recently-used map bounded by entry count and, when given, by bytes. The newest entry is
 * always kept (so a result just made can be fetched), even when it alone is over the byte budget:
 * everything older is evicted first.
 */
export class Lru<K, V> {
  private readonly map = new Map<K, { value: V; bytes: number }>();
  private total = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly capacity: number, private readonly budget?: LruBytes<V>) {}

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  set(key: K, value: V): void {
    if (this.capacity <= 0) return;
    this.delete(key);
    const bytes = this.budget ? this.budget.sizeOf(value) : 0;
    this.map.set(key, { value, bytes });
    this.total += bytes;
    while (this.map.size > 1 && (this.map.size > this.capacity || (this.budget && this.total > this.budget.maxBytes))) this.delete(this.map.keys().next().value as K);
  }

  delete(key: K): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.total -= e.bytes;
  }

  get size(): number {
    return this.map.size;
  }

  /** Bytes held, as the budget's sizeOf counts them (0 without a budget). */
  get bytes(): number {
    return this.total;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }
}
