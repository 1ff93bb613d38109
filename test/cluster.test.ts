import t from 'tap'
import { Redis, type Cluster } from 'ioredis'
import type { TotpUser } from '../plugin/index.js'
import { DEFAULT_SETTINGS_SHARDS } from '../plugin/options.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import { RedisTotpStore } from '../plugin/stores/redis.js'
import { Agent, awayFromStepEdge, build, codeFor, enrol, newPrefix, USERS, wrongCode } from './helpers.js'
import { storeContract } from './store-contract.js'
import { instanceScenarios } from './support/instances.js'
import { clusterClient, clusterKeys, keySlot, slotOwners, startRedisCluster } from './support/redis-servers.js'

// One real 3-master Redis Cluster for the whole file (private ports, stopped at the end).
const cluster = await startRedisCluster({ masters: 3 })
const connect = (): Promise<Cluster> => clusterClient(cluster.nodes)
const client = await connect()
t.teardown(async () => {
  client.disconnect()
  await cluster.stop()
})
const owners = await slotOwners(client)
const masterOf = async (key: string): Promise<number> => owners(await keySlot(client, key))!

// 30 users without roles under admin, so that enough users land on every master
const MEMBERS: TotpUser[] = Array.from({ length: 30 }, (_, i) => ({ id: `member-${i}`, parentId: 'admin', roles: [] }))
const users = [...USERS, ...MEMBERS]

/** Members grouped by the master that owns their slot (for `prefix`). */
async function membersByMaster (prefix: string): Promise<Map<number, string[]>> {
  const layout = new KeyLayout(prefix, DEFAULT_SETTINGS_SHARDS)
  const by = new Map<number, string[]>()
  for (const m of MEMBERS) {
    const port = await masterOf(layout.user({ tenant: 'default', userId: m.id }))
    by.set(port, [...(by.get(port) ?? []), m.id])
  }
  return by
}

storeContract(t, 'cluster', async (policy) => new RedisTotpStore({ client, keyPrefix: newPrefix(), ...policy }))

t.test('cluster: a user\'s keys (secret hash, pending setup, tenant settings copy) share one slot; users spread over all 3 masters', async (t) => {
  const layout = new KeyLayout(newPrefix(), DEFAULT_SETTINGS_SHARDS)
  const perMaster = new Map<number, number>()
  for (let i = 0; i < 300; i++) {
    const ref = { tenant: i % 3 === 0 ? 'acme:eu' : 'default', userId: i % 2 === 0 ? `user-${i}` : `ü{ser}:${i}` }
    const keys = [layout.user(ref), layout.pending(ref), layout.settingsFor(ref)]
    const slots = await Promise.all(keys.map((k) => keySlot(client, k)))
    t.equal(new Set(slots).size, 1, `one slot for ${ref.tenant}/${ref.userId}`)
    const port = owners(slots[0])!
    perMaster.set(port, (perMaster.get(port) ?? 0) + 1)
  }
  t.equal(perMaster.size, 3, `users on every master: ${JSON.stringify(Object.fromEntries(perMaster))}`)
  const shardMasters = new Set(await Promise.all(Array.from({ length: DEFAULT_SETTINGS_SHARDS }, (_, s) => masterOf(layout.settings('default', s)))))
  t.equal(shardMasters.size, 3, 'the tenant settings copies cover every master')
})

t.test('cluster: R1/R3/S5 enrol, verify, gate end to end; keys really live on the master owning their slot, on all three', async (t) => {
  await awayFromStepEdge(6000)
  const { app, keyPrefix } = await build(t, { redis: client, users })
  const by = await membersByMaster(keyPrefix)
  t.equal(by.size, 3, 'members on every master')
  const chosen = [...by.values()].flatMap((ids) => ids.slice(0, 2))
  const secrets = new Map<string, string>()
  for (const id of chosen) secrets.set(id, (await enrol(app, id)).secret)

  const found = await clusterKeys(client, `${keyPrefix}*`)
  const layout = new KeyLayout(keyPrefix, DEFAULT_SETTINGS_SHARDS)
  for (const id of chosen) {
    const key = layout.user({ tenant: 'default', userId: id })
    const holder = [...found].filter(([, keys]) => keys.includes(key)).map(([port]) => port)
    t.same(holder, [await masterOf(key)], `${id}'s hash lives on the master owning its slot only`)
  }
  const userHashes = [...found].map(([port, keys]) => [port, keys.filter((k) => /}u:/.test(k)).length])
  t.ok(userHashes.every(([, n]) => n >= 2), `user hashes on every master: ${JSON.stringify(userHashes)}`)

  for (const id of chosen) {
    const a = new Agent(app)
    await a.login(id)
    const gated = await a.get('/api/profile')
    t.equal(gated.statusCode, 401, `${id}: gated after sign-in`)
    const before = a.cookie
    t.same((await a.post('/totp/verify', { code: codeFor(secrets.get(id)!) })).json(), { verified: true }, `${id}: verified`)
    t.not(a.cookie, before, `${id}: S5 new session id`)
    t.same((await a.get('/api/profile')).json(), { user: id, cart: 'app data' }, `${id}: passes, app data kept`)
  }
  // RedisSessionStore on the Cluster: one key per session, on whichever master owns its slot
  await Promise.all(Array.from({ length: 40 }, () => new Agent(app).login('bob')))
  const sessions = [...(await clusterKeys(client, `${keyPrefix}sess:*`))].map(([port, keys]) => [port, keys.length])
  t.ok(sessions.every(([, n]) => n > 0), `sessions on every master: ${JSON.stringify(sessions)}`)
})

t.test('cluster: S3 replay — 20 parallel verifications of one code: exactly one 200', async (t) => {
  await awayFromStepEdge(6000)
  const { app } = await build(t, { redis: client, users })
  const { secret } = await enrol(app, 'alice')
  const agents = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const a = new Agent(app, `10.20.0.${i + 1}`)
    await a.login('alice')
    return a
  }))
  const code = codeFor(secret)
  const results = await Promise.all(agents.map((a) => a.post('/totp/verify', { code })))
  t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'exactly one 200')
  t.ok(results.filter((r) => r.statusCode !== 200).every((r) => ['FST_TOTP_INVALID_CODE', 'FST_TOTP_LOCKED'].includes(r.json().code)))
  const pass = await Promise.all(agents.map((a) => a.get('/api/profile')))
  t.equal(pass.filter((r) => r.statusCode === 200).length, 1, 'exactly one session passes the gate')
})

t.test('cluster: S4 lockout — 5 wrong codes, then 429 with Retry-After even for the right code', async (t) => {
  await awayFromStepEdge(6000)
  const { app, events } = await build(t, { redis: client, users })
  const { secret } = await enrol(app, 'bob')
  const a = new Agent(app)
  await a.login('bob')
  for (let i = 1; i <= 5; i++) t.equal((await a.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401, `failure ${i}`)
  const locked = await a.post('/totp/verify', { code: codeFor(secret) })
  t.equal(locked.statusCode, 429)
  t.equal(locked.json().code, 'FST_TOTP_LOCKED')
  t.equal(locked.headers['retry-after'], '30')
  t.ok(events.some((e) => e.type === 'locked' && e.userId === 'bob'))
})

t.test('cluster: R4/R5 revoke and enforce take effect on the target\'s next request', async (t) => {
  await awayFromStepEdge(6000)
  const { app } = await build(t, { redis: client, users })
  const alice = await enrol(app, 'alice')
  t.equal((await alice.agent.get('/api/profile')).statusCode, 200)
  const manager = new Agent(app)
  await manager.login('manager')
  t.equal((await manager.delete('/totp/users/alice/secret')).statusCode, 204, 'parent with CREATE revokes')
  t.match((await alice.agent.get('/totp/status')).json(), { enabled: false, verified: false }, 'the verified session lost its state')
  t.match((await manager.get('/totp/users/alice')).json(), { userId: 'alice', enabled: false, enforced: false, lockedUntil: null })

  const carol = new Agent(app)
  await carol.login('carol')
  t.equal((await carol.get('/api/profile')).statusCode, 200)
  const admin = new Agent(app)
  await admin.login('admin')
  t.equal((await admin.put('/totp/users/carol/enforcement', { enforced: true })).statusCode, 200)
  const gated = await carol.get('/api/profile')
  t.equal(gated.statusCode, 403)
  t.equal(gated.json().code, 'FST_TOTP_SETUP_REQUIRED')
  const setup = await carol.post('/totp/setup')
  t.equal(setup.statusCode, 201)
  t.equal((await carol.post('/totp/setup/confirm', { code: codeFor(setup.json().secret) })).statusCode, 200)
  t.equal((await carol.get('/api/profile')).statusCode, 200, 'enrolled and verified: passes')
})

t.test('cluster: R7 tenant-wide enforcement reaches users on every master (settings copied into every shard)', async (t) => {
  const { app, keyPrefix } = await build(t, { redis: client, users })
  const by = await membersByMaster(keyPrefix)
  const sample = [...by.values()].map((ids) => ids[0])
  t.equal(sample.length, 3)
  const agents = await Promise.all(sample.map(async (id) => {
    const a = new Agent(app)
    await a.login(id)
    t.equal((await a.get('/api/profile')).statusCode, 200, `${id} passes before`)
    return a
  }))
  const { agent: admin } = await enrol(app, 'admin') // R7: enforcing on all needs one's own secret first
  t.same((await admin.put('/totp/settings', { enforceAll: true })).json(), { enforceAll: true, enforceRoles: [], gracePeriod: 0 })
  const copies = await clusterKeys(client, `${keyPrefix}{default:*}t`)
  t.same([...copies.values()].reduce((n, keys) => n + keys.length, 0), DEFAULT_SETTINGS_SHARDS, 'one copy per shard')
  t.ok([...copies.values()].every((keys) => keys.length > 0), 'copies on every master')
  for (const [i, a] of agents.entries()) {
    const res = await a.get('/api/profile')
    t.equal(res.statusCode, 403, `${sample[i]} (master ${[...by.keys()][i]}) must set up`)
    t.equal(res.json().code, 'FST_TOTP_SETUP_REQUIRED')
  }
  t.same((await admin.get('/totp/settings')).json(), { enforceAll: true, enforceRoles: [], gracePeriod: 0 }, 'the admin, enrolled, still reads them')
  t.same(await app.totp.getSettings(), { enforceAll: true, enforceRoles: [], gracePeriod: 0 })
  await app.totp.setSettings({ enforceAll: false })
  for (const a of agents) t.equal((await a.get('/api/profile')).statusCode, 200, 'cleared everywhere')
})

t.test('cluster: R3 gate cost — exactly one Redis command per gated request, on whichever master holds the user (MONITOR on every node)', async (t) => {
  const { app, keyPrefix } = await build(t, { redis: client, users })
  const by = await membersByMaster(keyPrefix)
  const sample = [...by.values()].map((ids) => ids[0])
  const enrolled = await enrol(app, sample[0])
  const plain = await Promise.all(sample.slice(1).map(async (id) => {
    const a = new Agent(app)
    await a.login(id)
    return a
  }))
  const seen: string[][] = []
  const monitors = await Promise.all(cluster.nodes.map(async ({ host, port }) => {
    const node = new Redis(port, host)
    t.teardown(() => node.disconnect())
    const m = await node.monitor()
    m.on('monitor', (_time: string, args: string[], source: string) => { if (source !== 'lua') seen.push(args) })
    return m
  }))
  t.teardown(() => { for (const m of monitors) m.disconnect() })
  // MONITOR lags: wait until a marker sent on every master came back
  const settle = async (): Promise<void> => {
    const mark = `gate-cost-${Math.random()}`
    await Promise.all(client.nodes('master').map((n) => n.echo(mark)))
    for (let i = 0; i < 100 && seen.filter((a) => a[1] === mark).length < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  await settle()
  seen.length = 0
  const N = 5
  for (let i = 0; i < N; i++) {
    t.equal((await enrolled.agent.get('/api/profile')).statusCode, 200)
    for (const a of plain) t.equal((await a.get('/api/profile')).statusCode, 200)
  }
  await settle()
  const plugin = seen.filter((args) => args.some((a) => a.startsWith(keyPrefix) && !a.startsWith(`${keyPrefix}sess:`)))
  t.equal(plugin.length, N * sample.length, `one plugin command per gated request (${plugin.length} for ${N * sample.length})`)
  t.ok(plugin.every((args) => /^evalsha$/i.test(args[0])), 'each one gate script, over one slot')
})

instanceScenarios(t, 'cluster', connect)
