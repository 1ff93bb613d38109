// Redis for the benchmark: a private redis-server on a free port (or REDIS_URL), and
// the measurements read from it (INFO commandstats, MEMORY USAGE, version).
import type { Redis } from 'ioredis'
import { startRedis, type RedisServer } from '../test/support/redis-servers.js'

/**
 * A private `redis-server --save '' --appendonly no` on a free loopback port (the tests' helper); it dies with
 * this process.
 */
export type PrivateRedis = RedisServer
export const startPrivateRedis = (): Promise<PrivateRedis> => startRedis()

/** `INFO commandstats` as calls per command (lower case, e.g. `evalsha`, `get`, `hget`). */
export async function commandStats (redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('commandstats')
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2])
  return out
}

/** after − before, without the benchmark's own INFO calls; commands a script runs are counted too. */
export function statsDelta (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [name, calls] of Object.entries(after)) {
    if (name === 'info') continue
    const d = calls - (before[name] ?? 0)
    if (d > 0) out[name] = d
  }
  return out
}

/** CPU time Redis has used so far (user + system), in microseconds. */
export async function redisCpuMicros (redis: Redis): Promise<number> {
  const text = await redis.info('cpu')
  const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN)
  return Math.round((field('used_cpu_user') + field('used_cpu_sys')) * 1e6)
}

export async function redisVersion (redis: Redis): Promise<string> {
  const text = await redis.info('server')
  return /^redis_version:(.+)$/m.exec(text)?.[1].trim() ?? 'unknown'
}

/** Deletes every key matching `pattern` (SCAN + UNLINK): the benchmark's own keys on a shared Redis. */
export async function deleteMatching (redis: Redis, pattern: string): Promise<number> {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000)
    cursor = next
    if (keys.length > 0) deleted += await redis.unlink(...keys)
  } while (cursor !== '0')
  return deleted
}

/**
 * Counts the commands a client sends (round trips; a script is one), by name.
 * The count is kept on the client so the server process can report it.
 */
export function countRoundTrips (redis: Redis): Record<string, number> {
  const counts: Record<string, number> = {}
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((command, stream) => {
    counts[command.name] = (counts[command.name] ?? 0) + 1
    return send(command, stream)
  }) as Redis['sendCommand']
  return counts
}
