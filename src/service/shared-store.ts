import type { Redis } from 'ioredis';
import { AdapterFileSchema, type AdapterFile } from '../core/adapters/adapter-file.js';
import type { AdapterSet } from '../core/adapters/adapter-set.js';
import { KEY_PREFIX, redisClient } from './batch.js';

/**
 * State that replicas behind one load balancer share, on Redis (PROMPTSEG_REDIS_URL): results
 * with their masks and maps, volume results with their NIfTI and DICOM SEG makings, the image
 * bytes behind each image_id, background jobs' state and the adapters, so any replica answers any
 * URL, resource, image_id, job or adapter's name. Each entry
 * expires `ttlSeconds` after it was written (Redis's own memory limit and eviction policy bound the
 * rest). Image features stay each replica's own cache: recomputing them costs one encoder pass.
 * Keys are namespaced and versioned (`promptseg:v1:result:<id>`...).
 */
/** What the store holds: results, volume results, image_id bytes, background jobs' state. */
export type Kind = 'result' | 'volume' | 'image' | 'job';

export class SharedStore {
  private constructor(private readonly redis: Redis, private readonly ttlSeconds: number) {}

  static open(url: string, ttlSeconds: number): SharedStore {
    return new SharedStore(redisClient(url, { failFast: true }), ttlSeconds);
  }

  async put(kind: Kind, id: string, value: unknown): Promise<void> {
    await this.redis.set(`${KEY_PREFIX}:${kind}:${id}`, encode(value), 'EX', this.ttlSeconds);
  }

  async get<T>(kind: Kind, id: string): Promise<T | undefined> {
    const b = await this.redis.getBuffer(`${KEY_PREFIX}:${kind}:${id}`);
    return b ? (decode(b) as T) : undefined;
  }

  /**
   * Adapters (structures taught from labelled images) for every replica: each adapter file is
   * published to a hash, removals to a set, and a version counter says when either changed; a
   * replica brings its adapters folder up to date (writing files atomically, removing removed
   * ones) when it sees a new version.
   */
  async publishAdapter(f: AdapterFile): Promise<void> {
    await this.redis.multi().hset(ADAPTERS, f.id, JSON.stringify(f)).srem(ADAPTERS_REMOVED, f.id).incr(ADAPTERS_VERSION).exec();
  }

  async withdrawAdapter(id: string): Promise<void> {
    await this.redis.multi().hdel(ADAPTERS, id).sadd(ADAPTERS_REMOVED, id).incr(ADAPTERS_VERSION).exec();
  }

  private adaptersSeen: string | null = null;

  async syncAdapters(set: AdapterSet): Promise<void> {
    const version = await this.redis.get(ADAPTERS_VERSION);
    if (version === this.adaptersSeen) return;
    const [published, removed] = await Promise.all([this.redis.hgetall(ADAPTERS), this.redis.smembers(ADAPTERS_REMOVED)]);
    const here = new Set(set.list().map((a) => a.file.id));
    for (const [id, json] of Object.entries(published)) {
      if (here.has(id)) continue;
      const parsed = AdapterFileSchema.safeParse(JSON.parse(json));
      if (!parsed.success) continue;
      try {
        set.add(parsed.data);
      } catch {
        // a name this replica serves otherwise (an adapter of its own): listed as not served there
      }
    }
    for (const id of removed) if (here.has(id)) set.remove(id);
    this.adaptersSeen = version;
  }

  close(): void {
    this.redis.disconnect();
  }
}

const ADAPTERS = `${KEY_PREFIX}:adapters`;
const ADAPTERS_REMOVED = `${KEY_PREFIX}:adapters:removed`;
const ADAPTERS_VERSION = `${KEY_PREFIX}:adapters:version`;

type Typed = Uint8Array | Int16Array | Uint16Array | Int32Array | Float32Array | Float64Array;
const TYPES: Record<string, new (b: ArrayBuffer, o: number, n: number) => Typed> = { Uint8Array, Int16Array, Uint16Array, Int32Array, Float32Array, Float64Array };

/**
 * A value as one buffer: a JSON header in which every typed array (and Buffer) is a reference to
 * its bytes, then the bytes, each at an offset aligned to 8.
 */
export function encode(value: unknown): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const header = JSON.stringify(value, function (this: unknown, _k, v: unknown) {
    const raw = (this as Record<string, unknown>)[_k];
    const t = ArrayBuffer.isView(raw) ? raw : v;
    if (ArrayBuffer.isView(t) && !(t instanceof DataView)) {
      const type = Buffer.isBuffer(t) ? 'Buffer' : t.constructor.name;
      const bytes = Buffer.from(t.buffer, t.byteOffset, t.byteLength);
      const pad = (8 - (offset % 8)) % 8;
      if (pad) parts.push(Buffer.alloc(pad));
      offset += pad;
      const ref = { $bytes: offset, length: t.byteLength, type };
      parts.push(bytes);
      offset += t.byteLength;
      return ref;
    }
    return v;
  });
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length);
  return Buffer.concat([len, h, ...parts]);
}

export function decode(b: Buffer): unknown {
  const n = b.readUInt32LE(0);
  const body = b.subarray(4 + n);
  return JSON.parse(b.subarray(4, 4 + n).toString('utf8'), (_k, v: unknown) => {
    if (v && typeof v === 'object' && '$bytes' in v) {
      const r = v as { $bytes: number; length: number; type: string };
      const copy = Buffer.from(body.subarray(r.$bytes, r.$bytes + r.length)); // its own, aligned memory
      if (r.type === 'Buffer') return copy;
      const T = TYPES[r.type];
      if (!T) throw new Error(`shared store: unknown array type ${r.type}`);
      const ab = copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.byteLength);
      return new T(ab, 0, r.length / (T as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
    }
    return v;
  });
}
