// What the benchmark checks in Redis after the load: the flood verified nothing, and
// how many bytes an enrolled user costs.
import type { Redis } from 'ioredis'
import { DEFAULT_LOCKOUT } from '../plugin/options.js'
import type { KeyLayout } from '../plugin/stores/keys.js'
import type { Population, SeededUser } from './seed.js'
import { TENANT } from './seed.js'

export interface FloodOutcome {
  users: number
  /** Sessions of flood users carrying a verified mark (`totp` field): must be 0. */
  verifiedSessions: number
  /** Flood users whose last accepted step moved: must be 0. */
  consumedSteps: number
  /** Flood users charged the free failures, hence locked (S4). */
  lockedUsers: number
  sessionsScanned: number
}

/**
 * Scans every session key for a verified mark of a flood user (a verification
 * regenerates the session id, so the flood users' own keys are not enough), and
 * reads every flood user's hash: the last step must not have moved.
 */
export async function floodOutcome (
  redis: Redis, keys: KeyLayout, sessionPrefix: string, pop: Population
): Promise<FloodOutcome> {
  const floodIds = new Set(pop.flood.map((u) => u.id))
  let verifiedSessions = 0
  let sessionsScanned = 0
  let cursor = '0'
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${sessionPrefix}*`, 'COUNT', 5000)
    cursor = next
    if (found.length === 0) continue
    const values = await redis.mget(...found)
    for (const value of values) {
      if (value === null) continue
      sessionsScanned++
      const session = JSON.parse(value) as { uid?: { id: string }, totp?: { u: string, g?: number } }
      const floodOwned = floodIds.has(session.totp?.u ?? '') || floodIds.has(session.uid?.id ?? '')
      if (session.totp?.g !== undefined && floodOwned) verifiedSessions++
    }
  } while (cursor !== '0')

  const pipeline = redis.pipeline()
  for (const u of pop.flood) pipeline.hmget(keys.user({ tenant: TENANT, userId: u.id }), 'l', 'f')
  const rows = (await pipeline.exec()) ?? []
  let consumedSteps = 0
  let lockedUsers = 0
  for (const [err, row] of rows) {
    if (err) throw err
    const [l, f] = row as [string | null, string | null]
    if (Number(l) !== pop.seededStep) consumedSteps++
    if (Number(f ?? 0) >= DEFAULT_LOCKOUT.freeFailures) lockedUsers++
  }
  return { users: pop.flood.length, verifiedSessions, consumedSteps, lockedUsers, sessionsScanned }
}

export interface MemoryResult {
  sampledUsers: number
  bytesPerUser: number
  min: number
  max: number
  keysPerUser: number
  target: number
  met: boolean
  /** An app session, for scale (not the plugin's). */
  sessionBytes: number
}

export const MEMORY_TARGET = 256

/**
 * MEMORY USAGE of every key a user owns (the user hash `u:`, and the pending setup
 * `p:` when there is one), averaged over a sample spread evenly over all enrolled
 * users: verified ones, never used ones, gated ones and flooded (locked) ones.
 */
export async function memoryPerUser (
  redis: Redis, keys: KeyLayout, sessionPrefix: string, pop: Population, sample = 2000
): Promise<MemoryResult> {
  const enrolled: SeededUser[] = [...pop.verify, ...pop.gate, ...pop.flood]
  const step = Math.max(1, Math.floor(enrolled.length / sample))
  const users: SeededUser[] = []
  for (let i = 0; i < enrolled.length && users.length < sample; i += step) users.push(enrolled[i])
  const pipeline = redis.pipeline()
  for (const u of users) {
    const ref = { tenant: TENANT, userId: u.id }
    pipeline.memory('USAGE', keys.user(ref), 'SAMPLES', 0)
    pipeline.memory('USAGE', keys.pending(ref), 'SAMPLES', 0)
  }
  pipeline.memory('USAGE', sessionPrefix + pop.gate[0].sessionId, 'SAMPLES', 0)
  const replies = (await pipeline.exec()) ?? []
  const sessionBytes = Number(replies.pop()?.[1] ?? 0)
  let total = 0
  let keyCount = 0
  let min = Infinity
  let max = 0
  for (let i = 0; i < users.length; i++) {
    let bytes = 0
    for (const [err, value] of replies.slice(2 * i, 2 * i + 2)) {
      if (err) throw err
      if (value === null) continue
      bytes += Number(value)
      keyCount++
    }
    total += bytes
    min = Math.min(min, bytes)
    max = Math.max(max, bytes)
  }
  const bytesPerUser = total / users.length
  return {
    sampledUsers: users.length,
    bytesPerUser,
    min,
    max,
    keysPerUser: keyCount / users.length,
    target: MEMORY_TARGET,
    met: bytesPerUser <= MEMORY_TARGET,
    sessionBytes
  }
}
