import type { Cluster, Redis } from 'ioredis'
import { TotpOptionsError } from '../errors.js'
import { KeyLayout } from './keys.js'

/** Where a deployment's keys live: changing either moves every key (see `migrateLayout`). */
export interface Layout { keyPrefix: string; settingsShards: number }

/** Every deployment's key prefix on this Redis, with its shard count. */
export const LAYOUT_REGISTRY = 'fastify-totp:layouts'

const recordKey = (prefix: string): string => `${prefix}layout`
const masters = (client: Redis | Cluster): Redis[] =>
  client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]

export interface PrepareOptions {
  allowNewKeyPrefix: boolean
  warn: (message: string) => void
}

/**
 * The checks at start, on a Redis that is expected to hold this deployment's state:
 * - the key layout recorded at the first start is the one configured (a changed `settingsShards`
 *   or `keyPrefix` would make every enrolled user look unenrolled: in on the password alone);
 * - no master evicts keys without a TTL (`allkeys-*` would evict user records the same way).
 * Throws `FST_TOTP_OPTIONS` with what to do; where `CONFIG` is not allowed, warns once.
 */
export async function prepareRedis (client: Redis | Cluster, layout: Layout, opts: PrepareOptions): Promise<void> {
  // the layout first: its commands also connect a cluster client, so that its masters are known
  await checkLayout(client, layout, opts.allowNewKeyPrefix)
  await checkEviction(client, opts.warn)
}

async function checkEviction (client: Redis | Cluster, warn: (message: string) => void): Promise<void> {
  for (const node of masters(client)) {
    let policy: string | undefined
    try {
      const reply = await node.config('GET', 'maxmemory-policy') as string[]
      policy = reply[1]
    } catch (err) {
      warn(`fastify-totp-gate: cannot read maxmemory-policy (${(err as Error).message}); make sure this Redis uses ` +
        'noeviction or a volatile-* policy: an evicted user record lets that user in without a code')
      return
    }
    if (policy?.startsWith('allkeys-') === true) {
      throw new TotpOptionsError(`Redis ${node.options.host ?? ''}:${node.options.port ?? ''} evicts any key ` +
        `(maxmemory-policy ${policy}): an evicted user record would let that user in without a code. ` +
        'Use noeviction or a volatile-* policy, or a separate Redis for TOTP state')
    }
  }
}

async function checkLayout (
  client: Redis | Cluster,
  { keyPrefix, settingsShards }: Layout,
  allowNew: boolean
): Promise<void> {
  const recorded = await client.hget(recordKey(keyPrefix), 'shards')
  if (recorded === null) {
    // a prefix this Redis has not seen: refused while another deployment's record is alive
    const known = Object.keys(await client.hgetall(LAYOUT_REGISTRY)).filter((p) => p !== keyPrefix)
    const live: string[] = []
    for (const p of known) {
      if (await client.exists(recordKey(p)) === 1) live.push(p)
      else await client.hdel(LAYOUT_REGISTRY, p) // its keys are gone: nothing to protect
    }
    if (live.length > 0 && !allowNew) {
      throw new TotpOptionsError(`keyPrefix ${JSON.stringify(keyPrefix)} is new to this Redis, which holds TOTP ` +
        `state under ${live.map((p) => JSON.stringify(p)).join(', ')}: with a changed keyPrefix every enrolled user ` +
        'would pass without a code. Move the keys with `fastify-totp-gate-migrate`, or set allowNewKeyPrefix: true ' +
        'for a second deployment')
    }
    await client.hsetnx(recordKey(keyPrefix), 'shards', String(settingsShards))
  }
  const shards = Number(await client.hget(recordKey(keyPrefix), 'shards'))
  if (shards !== settingsShards) {
    throw new TotpOptionsError(`settingsShards is ${settingsShards}, but this Redis holds the keys under ` +
      `${JSON.stringify(keyPrefix)} in ${shards} shards: every enrolled user would pass without a code. Move the ` +
      `keys with \`fastify-totp-gate-migrate --prefix ${keyPrefix} --from-shards ${shards} ` +
      `--to-shards ${settingsShards}\`` +
      `, or set settingsShards: ${shards}`)
  }
  await client.hset(LAYOUT_REGISTRY, keyPrefix, String(shards))
}

const dec = (s: string): string => s.includes('%') ? decodeURIComponent(s) : s
const glob = (s: string): string => s.replace(/[*?[\]\\]/g, '\\$&')

/**
 * Moves a deployment's keys from one layout to another (run it with every instance stopped):
 * user records, pending setups, recovery codes and trusted devices go to their new slots with their
 * TTLs, each tenant's settings
 * are copied into every new shard, IP counters follow a changed prefix. Idempotent: a run that
 * stopped half-way can be run again. Returns how many keys it moved.
 */
export async function migrateLayout (client: Redis | Cluster, from: Layout, to: Layout): Promise<{ moved: number }> {
  const b = new KeyLayout(to.keyPrefix, to.settingsShards)
  const same = from.keyPrefix === to.keyPrefix
  const pattern = new RegExp(`^${from.keyPrefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\{([^:}]*):(\\d+)\\}(?:([uprd]):(.*)|t)$`)
  const settings = new Map<string, Record<string, string>>()
  let moved = 0
  const move = async (node: Redis, key: string, target: string): Promise<void> => {
    if (key === target) return
    const [dump, ttl] = await Promise.all([node.dumpBuffer(key), node.pttl(key)])
    if (dump === null) return
    await client.restore(target, ttl > 0 ? ttl : 0, dump, 'REPLACE')
    await node.del(key)
    moved++
  }
  for (const node of masters(client)) {
    const scan = node.scanStream({ match: `${glob(from.keyPrefix)}*`, count: 1000 }) as AsyncIterable<string[]>
    for await (const keys of scan) {
      for (const key of keys) {
        const m = pattern.exec(key)
        if (m !== null && m[3] !== undefined) {
          const ref = { tenant: dec(m[1]), userId: dec(m[4]) }
          const to = { u: b.user(ref), p: b.pending(ref), r: b.recovery(ref), d: b.devices(ref) }[m[3]]!
          await move(node, key, to)
        } else if (m !== null) {
          const tenant = dec(m[1])
          if (Number(m[2]) === 0 || !settings.has(tenant)) settings.set(tenant, await node.hgetall(key))
          if (!same || Number(m[2]) >= to.settingsShards) await node.del(key)
        } else if (key.startsWith(`${from.keyPrefix}ip:`) && !same) {
          await move(node, key, `${to.keyPrefix}${key.slice(from.keyPrefix.length)}`)
        }
      }
    }
  }
  for (const [tenant, fields] of settings) {
    for (let shard = 0; shard < to.settingsShards; shard++) {
      const key = b.settings(tenant, shard)
      await client.del(key)
      if (Object.keys(fields).length > 0) await client.hset(key, fields)
    }
    moved++
  }
  if (!same) {
    await client.del(recordKey(from.keyPrefix))
    await client.hdel(LAYOUT_REGISTRY, from.keyPrefix)
  }
  await client.hset(recordKey(to.keyPrefix), 'shards', String(to.settingsShards))
  await client.hset(LAYOUT_REGISTRY, to.keyPrefix, String(to.settingsShards))
  return { moved }
}
