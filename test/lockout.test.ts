import { crc32 } from 'node:zlib'
import t from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, enrol, wrongCode } from './helpers.js'

t.test('S4 brute force: 5 wrong codes, then 429 with Retry-After, even for the right code', async (t) => {
  await awayFromStepEdge(5000)
  const { app, events } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  for (let i = 1; i <= 5; i++) {
    const res = await a.post('/totp/verify', { code: wrongCode(secret) })
    t.equal(res.statusCode, 401, `failure ${i} is 401`)
  }
  const sixth = await a.post('/totp/verify', { code: codeFor(secret) })
  t.equal(sixth.statusCode, 429, 'the right code is not even checked')
  t.equal(sixth.json().code, 'FST_TOTP_LOCKED')
  t.equal(sixth.headers['retry-after'], '30')
  const status = (await a.get('/totp/status')).json()
  t.ok(Date.parse(status.lockedUntil) > Date.now() + 25_000, 'status shows the lock')
  // the lock is per user: another session, another IP is locked too
  const b = new Agent(app, '10.9.9.9')
  await b.login('alice')
  t.equal((await b.post('/totp/verify', { code: codeFor(secret) })).statusCode, 429)
  t.ok(events.some((e) => e.type === 'locked' && e.lockedForMs === 30_000))
})

t.test('S4 the lock doubles per further failure and caps; a success resets', async (t) => {
  await awayFromStepEdge(12000)
  // short locks so the test can wait them out: 500 ms doubling, capped at 2 s
  const { app } = await build(t, { plugin: { lockout: { freeFailures: 2, lockSeconds: 0.5, maxLockSeconds: 2 } } })
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401)
  const seen: number[] = []
  for (let i = 0; i < 5; i++) {
    const res = await a.post('/totp/verify', { code: wrongCode(secret) })
    t.equal(res.statusCode, 401)
    const locked = await a.post('/totp/verify', { code: wrongCode(secret) })
    t.equal(locked.statusCode, 429, 'locked after the failure')
    const until = Date.parse((await a.get('/totp/status')).json().lockedUntil)
    seen.push(until - Date.now())
    await new Promise((resolve) => setTimeout(resolve, until - Date.now() + 30))
  }
  // lock lengths 500, 1000, 2000, 2000, 2000 ms (measured from "now", so a little less)
  t.ok(seen[0] <= 500 && seen[0] > 250, `first lock ~500 ms (${seen[0]})`)
  t.ok(seen[1] <= 1000 && seen[1] > 750, `second ~1000 ms (${seen[1]})`)
  t.ok(seen[2] <= 2000 && seen[2] > 1750, `third ~2000 ms (${seen[2]})`)
  t.ok(seen[3] <= 2000 && seen[3] > 1750, `capped (${seen[3]})`)
  t.ok(seen[4] <= 2000 && seen[4] > 1750, `capped (${seen[4]})`)
  t.equal((await a.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'right code after the lock')
  const b = new Agent(app)
  await b.login('alice')
  t.equal((await b.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401, 'counter was reset: first failure again')
  t.equal((await b.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401, 'second failure: 401, it sets the lock')
  t.equal((await b.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 429)
})

t.test('S4 a reused code is a failure; malformed input is not', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t, { plugin: { lockout: { freeFailures: 2 } } })
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  for (let i = 0; i < 5; i++) t.equal((await a.post('/totp/verify', { code: 'abcdef' })).statusCode, 400)
  t.equal((await a.post('/totp/verify', { code: codeFor(secret, -1) })).statusCode, 401, 'the enrolment code, reused')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret, -1) })).statusCode, 401, 'reused again: the second failure locks')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret) })).statusCode, 429)
})

t.test('S4 per-IP failure budget across users', async (t) => {
  await awayFromStepEdge()
  const { app, events } = await build(t, { plugin: { ipLimit: { maxFailures: 3, windowSeconds: 60 } } })
  const alice = await enrol(app, 'alice')
  const carol = await enrol(app, 'carol')
  const bob = await enrol(app, 'bob')
  const attacker = (name: string): Agent => new Agent(app, '10.1.2.3')
  const a1 = attacker('alice'); await a1.login('alice')
  const a2 = attacker('carol'); await a2.login('carol')
  const a3 = attacker('bob'); await a3.login('bob')
  t.equal((await a1.post('/totp/verify', { code: wrongCode(alice.secret) })).statusCode, 401)
  t.equal((await a2.post('/totp/verify', { code: wrongCode(carol.secret) })).statusCode, 401)
  t.equal((await a3.post('/totp/verify', { code: wrongCode(bob.secret) })).statusCode, 401)
  const blocked = await a3.post('/totp/verify', { code: codeFor(bob.secret) })
  t.equal(blocked.statusCode, 429, 'the IP is out of budget although bob has one failure')
  t.ok(Number(blocked.headers['retry-after']) > 50)
  const elsewhere = new Agent(app, '10.4.5.6')
  await elsewhere.login('bob')
  t.equal((await elsewhere.post('/totp/verify', { code: codeFor(bob.secret) })).statusCode, 200, 'another IP is not refused')
  t.ok(events.some((e) => e.type === 'ip.locked'))
})

t.test('S4 per-IP budget read along with the session: a valid code is refused unconsumed, a wrong one charges no one', async (t) => {
  await awayFromStepEdge()
  const { app, redis, keyPrefix } = await build(t, { plugin: { ipLimit: { maxFailures: 3, windowSeconds: 60 } } })
  const alice = await enrol(app, 'alice')
  const bob = await enrol(app, 'bob')
  const a1 = new Agent(app, '10.1.2.3'); await a1.login('alice')
  const a2 = new Agent(app, '10.1.2.3'); await a2.login('bob')
  // a gated page first, as the sign-in flow shows one: the sessions now name their user, and
  // their next reads bring the user's state along, without the IP's budget (see consume.lua)
  for (const a of [a1, a2]) t.equal((await a.get('/totp/status')).statusCode, 200)
  for (const code of [wrongCode(alice.secret), wrongCode(alice.secret), wrongCode(alice.secret)]) {
    t.equal((await a1.post('/totp/verify', { code })).statusCode, 401)
  }
  const failures = async (user: string): Promise<string | null> => redis.hget(`${keyPrefix}{default:${crc32(user) % 64}}u:${user}`, 'f')
  t.equal(await failures('alice'), '3', 'the three failures charged alice')
  const valid = codeFor(bob.secret)
  const refused = await a2.post('/totp/verify', { code: valid })
  t.equal(refused.statusCode, 429, 'the IP is out of budget: a valid code is refused')
  t.ok(Number(refused.headers['retry-after']) > 50)
  const wrong = await a1.post('/totp/verify', { code: wrongCode(alice.secret) })
  t.equal(wrong.statusCode, 429, 'and a wrong one')
  t.equal(await failures('alice'), '3', 'the refused wrong code charged alice nothing')
  t.equal(await redis.get(`${keyPrefix}ip:10.1.2.3`), '3', 'nor the IP')
  const elsewhere = new Agent(app, '10.4.5.6')
  await elsewhere.login('bob')
  t.equal((await elsewhere.post('/totp/verify', { code: valid })).statusCode, 200, 'the refused code was not consumed: it still verifies from another IP')
})

t.test('S4 per-IP budget: setup confirmation from an IP over budget is refused and confirms nothing, read apart or along', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t, { plugin: { ipLimit: { maxFailures: 2, windowSeconds: 60 } } })
  const alice = await enrol(app, 'alice')
  // read along: this session names alice with a secret to check (p); her secret is then revoked
  const stale = new Agent(app, '10.6.6.6')
  await stale.login('alice')
  t.equal((await stale.get('/totp/status')).statusCode, 200)
  t.equal(await app.totp.revoke('alice'), true)
  const aliceElsewhere = new Agent(app, '10.5.5.5')
  await aliceElsewhere.login('alice')
  const aliceSetup = (await aliceElsewhere.post('/totp/setup')).json().secret
  // read apart: carol's setup session, from the same IP
  const carol = new Agent(app, '10.6.6.6')
  await carol.login('carol')
  const carolSetup = (await carol.post('/totp/setup')).json().secret
  const attacker = new Agent(app, '10.6.6.6')
  await attacker.login('frank')
  await attacker.post('/totp/setup')
  for (let i = 0; i < 2; i++) t.equal((await attacker.post('/totp/setup/confirm', { code: wrongCode(alice.secret) })).statusCode, 401)

  t.equal((await stale.post('/totp/setup/confirm', { code: codeFor(aliceSetup) })).statusCode, 429, 'read along: the IP is out of budget')
  t.equal((await carol.post('/totp/setup/confirm', { code: codeFor(carolSetup) })).statusCode, 429, 'read apart: the same')
  t.equal((await aliceElsewhere.post('/totp/setup/confirm', { code: codeFor(aliceSetup) })).statusCode, 200, 'the codes were not used: they confirm from another IP')
  const carolElsewhere = new Agent(app, '10.8.8.8')
  await carolElsewhere.login('carol')
  t.equal((await carolElsewhere.post('/totp/setup/confirm', { code: codeFor(carolSetup) })).statusCode, 200)
})

t.test('S4 only a first-factor session can reach a user\'s counter', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const anon = new Agent(app)
  for (let i = 0; i < 8; i++) t.equal((await anon.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401)
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'alice is not locked')
})
