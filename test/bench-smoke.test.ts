// A second of the benchmark: every scenario runs against the benchmark's app on a private
// Redis and answers as it should. No speed is asserted (npm run bench measures).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { Signer } from '@fastify/cookie'
import { buildBenchApp, STEP_UP_MAX_AGE, STEP_UP_PATH } from '../benchmarks/app.js'
import { floodOutcome, memoryPerUser } from '../benchmarks/checks.js'
import { runCore } from '../benchmarks/core.js'
import { httpScenarios, runInterleaved, runLoad, unexpected } from '../benchmarks/scenarios.js'
import {
  POLICY_GRACE, POLICY_ROLES, POLICY_TENANT, seed, sessionCookie, sessionValue, TENANT, USER_ROLES
} from '../benchmarks/seed.js'
import { SECRET_PURPOSE } from '../plugin/verification.js'
import { createKeyRing, seal } from '../plugin/crypto/seal.js'
import { DEFAULT_LOCKOUT } from '../plugin/options.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import { RedisTotpStore } from '../plugin/stores/redis.js'
import { DEFAULT_TOTP_PARAMS, generateSecret, timeStepAt } from '../plugin/totp/index.js'
import { startRedis } from './support/redis-servers.js'

const FLOOD_PER_SLOT = 20

t.test('benchmark smoke: every scenario answers as expected; the flood (S4) locks users and verifies no session; core runs', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const encryptionKey = randomBytes(32).toString('base64')
  const sessionSecret = randomBytes(32).toString('base64url')
  const keys = new KeyLayout('totp:', 64)
  const keyRing = createKeyRing(encryptionKey)

  const seeded = await seed({
    redisUrl: server.url,
    keys,
    keyRing,
    sessionPrefix: 'sess:',
    sessionSecret,
    counts: { base: 10, verify: 3000, gate: 10, plain: 10, flood: 3 * FLOOD_PER_SLOT, policy: 10 }
  })
  const pop = seeded.population
  t.equal(seeded.users, 3000 + 10 + 3 * FLOOD_PER_SLOT + 10, 'enrolled users seeded')
  t.equal(seeded.sessions, 10 + 3000 + 10 + 10 + 3 * FLOOD_PER_SLOT + 10, 'one session each')
  t.equal(seeded.settings, keys.shards, 'the policy tenant\'s settings: a copy per shard')
  t.equal(await redis.dbsize(), seeded.users + seeded.sessions + seeded.settings, 'every write landed')

  // The seeded hash has the fields the store's own scripts write at enrolment.
  const store = new RedisTotpStore({ client: redis, keyPrefix: 'totp:', lock: { freeFailures: 5, lockMs: 30000, maxLockMs: 900000, maxFailures: 20 }, ip: null })
  const ref = { tenant: TENANT, userId: 'enrolled-by-the-store' }
  const sealed = seal(keyRing, generateSecret(), { ...ref, purpose: SECRET_PURPOSE })
  t.match(await store.startSetup(ref, { sealed, qr: '', ttlMs: 60000 }), { status: 'started' })
  t.match(await store.attempt(ref, {
    kind: 'confirm', gen: 0, step: timeStepAt(DEFAULT_TOTP_PARAMS) - 1, pending: sealed, ip: null
  }), { ok: true })
  const seededFields = (await redis.hkeys(keys.user({ tenant: TENANT, userId: pop.verify[0].id }))).sort()
  t.same(seededFields, (await redis.hkeys(keys.user(ref))).sort(), 'seeded users look like users the store enrolled')
  // ... and the seeded tenant settings like the store's own, in every shard
  const settings = { enforceAll: false, enforceRoles: POLICY_ROLES, gracePeriod: POLICY_GRACE }
  await store.setSettings('set-by-the-store', settings)
  const copies = (tenant: string): Promise<Array<Record<string, string>>> =>
    Promise.all(Array.from({ length: keys.shards }, (_, shard) => redis.hgetall(keys.settings(tenant, shard))))
  t.same(await copies(POLICY_TENANT), await copies('set-by-the-store'), 'seeded settings copies as setSettings writes them')
  t.same(await store.getSettings(POLICY_TENANT), settings, 'the store reads the seeded settings back')

  const app = await buildBenchApp({ redis, keyPrefix: 'totp:', sessionPrefix: 'sess:', encryptionKey, sessionSecret })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const scenarios = httpScenarios(pop, { rounds: 1 })
  t.same(scenarios.map((s) => s.name), ['health', 'session-only', 'gate', 'gate-plain', 'gate-policies', 'verify', 'flood'])
  // all at once: about a second in all (slot 1 is the first measured round, 0 the warm-up)
  const amountOf = (name: string): number => name === 'flood' ? 10 * FLOOD_PER_SLOT : 150
  const results = await Promise.all(scenarios.map((s) =>
    runLoad(url, s.options(1), { connections: 4, amount: amountOf(s.name) })))
  scenarios.forEach((scenario, i) => {
    const r = results[i]
    t.equal(r.requests, amountOf(scenario.name), `${scenario.name}: every request answered`)
    t.same(unexpected(scenario, r), {}, `${scenario.name}: only expected answers (${JSON.stringify(r.statuses)})`)
  })
  // gate-policies' users are enforced by their role (R13): without TOTP, they would have to set it up
  t.match(await app.totp.status({ id: 'no-totp', roles: USER_ROLES }, { tenant: POLICY_TENANT }), { setupRequired: true },
    'gate-policies: USER_ROLES hold an enforced role')
  t.match(await app.totp.status({ id: 'no-totp', roles: ['ROLE_USER'] }, { tenant: POLICY_TENANT }), { setupRequired: false },
    'the other role is not enforced')
  // a step-up route (R12): the seeded sessions verified recently; one that verified longer than maxAge ago
  // (or whose mark has no time) must verify again, while the same session still passes the plain gate
  const signer = new Signer(sessionSecret, 'sha256')
  const policyUser = { id: pop.policy[0].id, tenant: POLICY_TENANT, roles: USER_ROLES }
  const staleAt = Date.now() - (STEP_UP_MAX_AGE + 60) * 1000
  for (const [name, value] of [
    ['verified too long ago', sessionValue(policyUser, 1, staleAt)],
    ['a mark without a time', JSON.stringify({ ...JSON.parse(sessionValue(policyUser, 1)), totp: { t: POLICY_TENANT, u: policyUser.id, g: 1 } })]
  ] as const) {
    const sessionId = randomBytes(24).toString('base64url')
    await redis.set(`sess:${sessionId}`, value, 'PX', 60_000)
    const cookie = sessionCookie(signer, sessionId)
    const stale = await fetch(url + STEP_UP_PATH, { headers: { cookie } })
    t.equal(stale.status, 401, `step-up, ${name}: 401`)
    t.match(await stale.json(), { code: 'FST_TOTP_STEP_UP_REQUIRED' }, `step-up, ${name}: FST_TOTP_STEP_UP_REQUIRED`)
    t.equal((await fetch(`${url}/app/profile`, { headers: { cookie } })).status, 200, `${name}: still verified for /app/profile`)
  }
  const fresh = await fetch(url + STEP_UP_PATH, { headers: { cookie: pop.policy[1].cookie } })
  t.equal(fresh.status, 200, 'step-up, a seeded session: 200')

  const flooded = results[scenarios.findIndex((s) => s.name === 'flood')]
  // S4: exactly the free failures are charged per user (401), everything after is refused (429)
  t.equal(flooded.statuses['401'], DEFAULT_LOCKOUT.freeFailures * FLOOD_PER_SLOT, 'flood: 5 wrong codes per user answer 401')
  t.equal(flooded.statuses['429'], amountOf('flood') - DEFAULT_LOCKOUT.freeFailures * FLOOD_PER_SLOT, 'flood: the rest is locked out')
  t.same(scenarios.flatMap((s) => s.notes()), [], 'verify: no user reused')

  // the rounds' runs: the baseline and a scenario alternate on the same connections, and each
  // answer is counted for the kind of request it answered
  const byName = (name: string) => scenarios.find((s) => s.name === name)!
  const [baseline, gated] = await runInterleaved(url, [byName('session-only').request(1), byName('gate-plain').request(1)], { connections: 4, seconds: 1, sliceMs: 100, guardMs: 20 })
  for (const [name, r] of [['session-only', baseline], ['gate-plain', gated]] as const) {
    t.ok(r.requests > 0 && r.rps > 0, `interleaved ${name}: answers counted (${r.requests})`)
    t.same(unexpected(byName(name), r), {}, `interleaved ${name}: only expected answers`)
    t.equal(r.latencies.length, r.requests)
  }
  t.equal(baseline.seconds, 3 * 0.08, 'the baseline: slices 2, 4 and 6 of 10 counted, 80 ms each')
  t.equal(gated.seconds, 4 * 0.08, 'the scenario: slices 1, 3, 5 and 7')
  const [health, verify] = await runInterleaved(url, [byName('health').request(1), byName('verify').request(1)], { connections: 4, seconds: 1, sliceMs: 100, guardMs: 20 })
  t.ok(health.requests > 0 && verify.requests > 0)
  t.same(health.statuses, { 200: health.requests }, 'health answers 200 in its slices')
  t.same(verify.statuses, { 200: verify.requests }, 'each verification a fresh user: 200')
  // runInterleaved checks its arguments before it starts (it throws, no promise to discard)
  const twice = (): Parameters<typeof runInterleaved>[1] => [byName('health').request(1), byName('health').request(1)]
  t.throws(() => runInterleaved(url, twice(), { connections: 1, seconds: 0.4, sliceMs: 100, guardMs: 20 }),
    /at least 5 slices/)
  t.throws(() => runInterleaved(url, twice(), { connections: 1, seconds: 1, sliceMs: 100, guardMs: 100 }),
    /guard shorter/)

  const flood = await floodOutcome(redis, keys, 'sess:', pop)
  t.equal(flood.verifiedSessions, 0, 'no flooded session is verified')
  t.equal(flood.consumedSteps, 0, 'no flooded user\'s step was consumed')
  t.equal(flood.lockedUsers, FLOOD_PER_SLOT, 'every attacked user is locked')
  // a verification cut off by the end of the timed interleaved run (at most one per connection,
  // 4) has dropped its old session and not yet saved the new one: the scan may miss those
  t.ok(flood.sessionsScanned >= seeded.sessions - 4, `every session scanned (${flood.sessionsScanned} of ${seeded.sessions})`)

  const memory = await memoryPerUser(redis, keys, 'sess:', pop, 50)
  t.ok(memory.bytesPerUser > 0 && memory.keysPerUser >= 1, `memory per user measured (${Math.round(memory.bytesPerUser)} bytes)`)

  const core = runCore({ rounds: 1, msPerRound: 50 })
  t.ok(core.verifyOps > 0 && core.rawOps > 0 && core.validOps > 0, 'core runs')
})
