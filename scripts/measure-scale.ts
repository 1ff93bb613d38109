// Figures for the README's scaling section, measured on private Redis servers:
//   1. Redis memory per enrolled user (MEMORY USAGE of every key a user owns, and the
//      used_memory growth), averaged over USERS enrolled users; sessions and tenant settings too;
//   2. Redis commands per login, from sign-in to the first verified page (INFO commandstats);
//   3. a failover: a Redis Cluster with one replica per master, a master killed mid-traffic,
//      the replica promoted; the unavailability window seen by users on that master and by
//      the others, FAILOVERS times.
// Run: node --import tsx scripts/measure-scale.ts   (USERS=1000 FAILOVERS=3 by default)
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { seal } from '../plugin/crypto/seal.js'
import { SECRET_PURPOSE } from '../plugin/verification.js'
import { createKeyRing } from '../plugin/index.js'
import { DEFAULT_LOCKOUT, DEFAULT_SETTINGS_SHARDS } from '../plugin/options.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import { RedisTotpStore } from '../plugin/stores/redis.js'
import { generateSecret } from '../plugin/totp/index.js'
import { Agent, build, codeFor, enrol, KEY, USERS as DEMO_USERS } from '../test/helpers.js'
import {
  clusterClient, clusterKeys, keySlot, slotOwners, startRedis, startRedisCluster
} from '../test/support/redis-servers.js'

const USERS = Number(process.env.USERS ?? 1000)
const FAILOVERS = Number(process.env.FAILOVERS ?? 3)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** build() wants a tap Test for its teardown only. */
function harness (): { t: Test, close: () => Promise<void> } {
  const fns: Array<() => unknown> = []
  return {
    t: { teardown: (fn: () => unknown) => { fns.push(fn) } } as unknown as Test,
    close: async () => { for (const fn of fns.reverse()) await fn() }
  }
}

async function usedMemory (redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
}

async function memoryPerUser (): Promise<Record<string, number>> {
  const server = await startRedis()
  const redis = new Redis(server.url)
  try {
    const lock = {
      freeFailures: DEFAULT_LOCKOUT.freeFailures,
      lockMs: DEFAULT_LOCKOUT.lockSeconds * 1000,
      maxLockMs: DEFAULT_LOCKOUT.maxLockSeconds * 1000,
      maxFailures: DEFAULT_LOCKOUT.maxFailures
    }
    const store = new RedisTotpStore({ client: redis, lock, ip: null })
    const layout = new KeyLayout('totp:', DEFAULT_SETTINGS_SHARDS)
    const ring = createKeyRing(KEY)
    await store.gate({ tenant: 'default', userId: 'warm-up' })
    const before = await usedMemory(redis)
    const refs = Array.from({ length: USERS }, () => ({ tenant: 'default', userId: randomUUID() }))
    // a real enrolment: sealed 160-bit secret, confirmed with a time step (the hash then holds s, l, g)
    for (let i = 0; i < refs.length; i += 100) {
      await Promise.all(refs.slice(i, i + 100).map(async (ref) => {
        const sealed = seal(ring, generateSecret(), { ...ref, purpose: SECRET_PURPOSE })
        await store.startSetup(ref, { sealed, qr: '', ttlMs: 600_000 })
        await store.attempt(ref, { kind: 'confirm', gen: 0, step: 58_000_000, pending: sealed, ip: null })
      }))
    }
    const after = await usedMemory(redis)
    let usage = 0
    for (const ref of refs) usage += Number(await redis.memory('USAGE', layout.user(ref), 'SAMPLES', 0))
    const pendingKeys = await redis.keys('totp:*}p:*')
    const sample = refs[0]
    const fields = await redis.hgetall(layout.user(sample))
    // an enforced user: one more field
    await store.setEnforced(sample, true)
    const enforced = Number(await redis.memory('USAGE', layout.user(sample), 'SAMPLES', 0))
    // a pending setup (10 minutes at most)
    const pendingRef = { tenant: 'default', userId: randomUUID() }
    const sealedPending = seal(ring, generateSecret(), { ...pendingRef, purpose: SECRET_PURPOSE })
    const qr = 'data:image/png;base64,' + 'A'.repeat(4800)
    await store.startSetup(pendingRef, { sealed: sealedPending, qr, ttlMs: 600_000 })
    const pending = Number(await redis.memory('USAGE', layout.pending(pendingRef), 'SAMPLES', 0))
    // tenant settings: one copy per shard
    await store.setSettings('default', { enforceAll: true, enforceRoles: [], gracePeriod: 0 })
    let settings = 0
    for (let s = 0; s < DEFAULT_SETTINGS_SHARDS; s++) {
      settings += Number(await redis.memory('USAGE', layout.settings('default', s), 'SAMPLES', 0))
    }
    return {
      users: USERS,
      memoryUsagePerUser: Math.round(usage / USERS),
      usedMemoryGrowthPerUser: Math.round((after - before) / USERS),
      hashFields: Object.keys(fields).length,
      sealedSecretChars: fields.s.length,
      userKeyChars: layout.user(sample).length,
      enforcedUserHash: enforced,
      pendingSetupKey: pending,
      leftoverPendingKeys: pendingKeys.length,
      tenantSettingsAllShards: settings
    }
  } finally {
    redis.disconnect()
    await server.stop()
  }
}

/** Commands the clients sent (MONITOR; commands run inside the Lua scripts are left out), by name. */
async function countCommands (redis: Redis, steps: () => Promise<void>): Promise<Record<string, number>> {
  const monitor = await redis.monitor()
  const seen: Record<string, number> = {}
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') return
    const name = args[0].toLowerCase()
    seen[name] = (seen[name] ?? 0) + 1
  })
  await sleep(100)
  await steps()
  await sleep(200)
  monitor.disconnect()
  return seen
}
const total = (stats: Record<string, number>): number => Object.values(stats).reduce((a, b) => a + b, 0)

async function commandsPerLogin (): Promise<Record<string, unknown>> {
  const server = await startRedis()
  const redis = new Redis(server.url)
  const h = harness()
  try {
    const { app, keyPrefix } = await build(h.t, { redis })
    const { secret } = await enrol(app, 'alice')
    const carol = await enrol(app, 'carol')
    const login = async (a: Agent, code: string): Promise<void> => {
      await a.login('alice')
      await a.get('/totp/status')
      const res = await a.post('/totp/verify', { code })
      if (res.statusCode !== 200) throw new Error(`verify: ${res.statusCode} ${res.body}`)
      const page = await a.get('/api/profile')
      if (page.statusCode !== 200) throw new Error(`profile: ${page.statusCode}`)
    }
    // warm-up: every script loaded (EVALSHA from now on)
    await login(new Agent(app), codeFor(secret))
    const w = new Agent(app)
    await w.login('alice')
    await w.post('/totp/verify', { code: codeFor(secret, 5) })
    await sleep(30_500 - (Date.now() % 30_000)) // the next time step: a fresh code
    const enrolled = await countCommands(redis, () => login(new Agent(app), codeFor(secret)))
    const plain = await countCommands(redis, async () => {
      const a = new Agent(app)
      await a.login('bob')
      await a.get('/api/profile')
    })
    const steady = await countCommands(redis, async () => { await carol.agent.get('/api/profile') })
    // a verified session as the test app stores it (uid, some app data, the TOTP mark)
    const signed = decodeURIComponent(carol.agent.cookie!.slice('sessionId='.length))
    const sessionKey = `${keyPrefix}sess:${signed.slice(0, signed.lastIndexOf('.'))}`
    const sessionBytes = Number(await redis.memory('USAGE', sessionKey, 'SAMPLES', 0))
    const sessionJson = (await redis.get(sessionKey))!.length
    const wrong = await countCommands(redis, async () => {
      const a = new Agent(app)
      await a.login('alice')
      await a.post('/totp/verify', { code: codeFor(secret, 5) })
    })
    return {
      'enrolled user: POST /login, GET /totp/status, POST /totp/verify, GET /api/profile': {
        total: total(enrolled), ...enrolled
      },
      'user without TOTP: POST /login, GET /api/profile': { total: total(plain), ...plain },
      'a verified session, one more page': { total: total(steady), ...steady },
      'POST /login, then a wrong code': { total: total(wrong), ...wrong },
      'a verified session key': { memoryUsage: sessionBytes, jsonChars: sessionJson }
    }
  } finally {
    await h.close()
    redis.disconnect()
    await server.stop()
  }
}

interface Probe { name: string, agent: Agent, onVictim: boolean, log: Array<{ at: number, status: number }> }

async function failover (run: number): Promise<Record<string, unknown>> {
  const cluster = await startRedisCluster({ replicasPerMaster: 1 })
  const client = await clusterClient(cluster.nodes)
  const h = harness()
  const members = Array.from({ length: 30 }, (_, i) =>
    ({ id: `member-${i}`, parentId: 'admin', roles: [] as string[] }))
  try {
    const { app, keyPrefix } = await build(h.t, {
      redis: client, users: [...DEMO_USERS, ...members], sessions: 'memory', plugin: { timeout: 1000 }
    })
    const owners = await slotOwners(client)
    const layout = new KeyLayout(keyPrefix, DEFAULT_SETTINGS_SHARDS)
    const masterOf = async (id: string): Promise<number> =>
      owners(await keySlot(client, layout.user({ tenant: 'default', userId: id })))!
    const byMaster = new Map<number, string>()
    for (const m of members) {
      const port = await masterOf(m.id)
      if (!byMaster.has(port)) byMaster.set(port, m.id)
    }
    const masters = [...byMaster.keys()]
    const victim = masters[run % masters.length]
    const probes: Probe[] = []
    for (const [port, id] of byMaster) {
      const { agent } = await enrol(app as FastifyInstance, id)
      probes.push({ name: id, agent, onVictim: port === victim, log: [] })
    }
    await sleep(1000) // replication of the enrolments
    // what the killed master held: is it all on the promoted replica afterwards?
    const held = (await clusterKeys(client, `${keyPrefix}*`)).get(victim) ?? []
    let running = true
    const loops = probes.map(async (p) => {
      // eslint-disable-next-line no-unmodified-loop-condition -- set to false after the failover (finally below)
      while (running) {
        const res = await p.agent.get('/api/profile')
        p.log.push({ at: Date.now(), status: res.statusCode })
        await sleep(25)
      }
    })
    let killed = 0
    let promoted = Infinity
    // settled: twenty 200s in a row since the promotion
    const settled = (p: Probe): boolean => {
      const since = p.log.filter((l) => l.at > promoted)
      return since.length >= 20 && since.slice(-20).every((l) => l.status === 200)
    }
    try {
      await sleep(300)
      killed = Date.now()
      await cluster.killNode(victim)
      await cluster.waitPromoted(victim, 30_000)
      promoted = Date.now()
      for (let i = 0; i < 300 && !probes.every(settled); i++) await sleep(100)
    } finally {
      running = false
      await Promise.all(loops)
    }
    type Window = { firstFailureMs: number | null, unavailableMs: number, failures: number, statuses: number[] }
    const windowOf = (p: Probe): Window => {
      const after = p.log.filter((l) => l.at >= killed)
      const failed = after.filter((l) => l.status !== 200)
      const lastFailure = failed.at(-1)
      const back = lastFailure === undefined ? undefined : after.find((l) => l.at > lastFailure.at && l.status === 200)
      return {
        firstFailureMs: failed[0] === undefined ? null : failed[0].at - killed,
        unavailableMs: lastFailure === undefined ? 0 : (back ?? lastFailure).at - killed,
        failures: failed.length,
        statuses: [...new Set(failed.map((l) => l.status))]
      }
    }
    let lost = 0
    for (const key of held) if (await client.exists(key) === 0) lost++
    const onVictim = probes.filter((p) => p.onVictim).map(windowOf)
    const others = probes.filter((p) => !p.onVictim).map(windowOf)
    // the killed master comes back as a replica of the promoted one
    const restartStart = Date.now()
    await cluster.startNode(victim)
    return {
      run,
      promotedAfterMs: promoted - killed,
      usersOnKilledMaster: onVictim,
      usersOnOtherMasters: others,
      verifiedSessionsSurvived: probes.every(settled),
      keysOnKilledMaster: held.length,
      keysLostInFailover: lost,
      oldMasterRejoinedInMs: Date.now() - restartStart
    }
  } finally {
    await h.close()
    client.disconnect()
    await cluster.stop()
  }
}

const results: Record<string, unknown> = {}
console.log(`memory per enrolled user (${USERS} users, standalone Redis)…`)
results.memory = await memoryPerUser()
console.log(JSON.stringify(results.memory, null, 2))
console.log('commands per login…')
results.commands = await commandsPerLogin()
console.log(JSON.stringify(results.commands, null, 2))
results.failovers = []
for (let run = 0; run < FAILOVERS; run++) {
  console.log(
    `failover ${run + 1}/${FAILOVERS} (3 masters + 3 replicas, cluster-node-timeout 2000 ms, master SIGKILLed)…`
  )
  const r = await failover(run)
  ;(results.failovers as unknown[]).push(r)
  console.log(JSON.stringify(r, null, 2))
}
