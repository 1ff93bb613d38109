import t from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'

t.test('S3 replay: 20 parallel verifications with one valid code in 20 sessions of one user: exactly one succeeds', async (t) => {
  await awayFromStepEdge(5000)
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const agents = await Promise.all(Array.from({ length: 20 }, async () => {
    const a = new Agent(app)
    await a.login('alice')
    return a
  }))
  const code = codeFor(secret)
  const results = await Promise.all(agents.map((a) => a.post('/totp/verify', { code })))
  const statuses = results.map((r) => r.statusCode)
  t.equal(statuses.filter((s) => s === 200).length, 1, 'exactly one 200')
  t.equal(statuses.filter((s) => s !== 200).length, 19)
  t.ok(results.filter((r) => r.statusCode !== 200).every((r) => ['FST_TOTP_INVALID_CODE', 'FST_TOTP_LOCKED'].includes(r.json().code)))
  const passing = await Promise.all(agents.map((a) => a.get('/api/profile')))
  t.equal(passing.filter((r) => r.statusCode === 200).length, 1, 'exactly one session passes the gate')
})

t.test('S3 replay: an older step inside the window, after a newer one was accepted, is refused', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret, 1) })).statusCode, 200, 'next step accepted (window +1)')
  const b = new Agent(app)
  await b.login('alice')
  const older = await b.post('/totp/verify', { code: codeFor(secret, 0) })
  t.equal(older.statusCode, 401)
  t.equal(older.json().code, 'FST_TOTP_INVALID_CODE')
  const same = await b.post('/totp/verify', { code: codeFor(secret, 1) })
  t.equal(same.statusCode, 401, 'the same code again is refused')
})

t.test('S3 the confirming code at setup counts as used', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const agent = new Agent(app)
  await agent.login('alice')
  const { secret } = (await agent.post('/totp/setup')).json()
  const code = codeFor(secret)
  t.equal((await agent.post('/totp/setup/confirm', { code })).statusCode, 200)
  const other = new Agent(app)
  await other.login('alice')
  t.equal((await other.post('/totp/verify', { code })).statusCode, 401)
})

t.test('S3 codes outside the window are refused', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret, 2) })).statusCode, 401, 'two steps ahead')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret, -3) })).statusCode, 401, 'three steps back')
})

t.test('S3 replay: 10 parallel verifications with one valid code in one session: exactly one succeeds', async (t) => {
  await awayFromStepEdge(5000)
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  const cookie = a.cookie as string
  const code = codeFor(secret)
  const results = await Promise.all(Array.from({ length: 10 }, () => app.inject({ method: 'POST', url: '/totp/verify', payload: { code }, headers: { cookie } })))
  t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'exactly one 200')
  t.ok(results.filter((r) => r.statusCode !== 200).every((r) => ['FST_TOTP_INVALID_CODE', 'FST_TOTP_LOCKED'].includes(r.json().code)), 'the others: a reused code')
  const verified = results.map((r) => r.cookies.find((c) => c.name === 'sessionId')).filter((c, i) => c !== undefined && results[i].statusCode === 200)
  t.equal(verified.length, 1, 'one verified session')
})

t.test('S3/S5 the session id a verification replaced, saved again by a request still in flight on it, cannot use the code again', async (t) => {
  await awayFromStepEdge(5000)
  const { app, redis, keyPrefix } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  const before = a.cookie as string
  const sessionKey = `${keyPrefix}sess:${decodeURIComponent(before.slice('sessionId='.length)).split('.')[0]}`
  const value = await redis.get(sessionKey)
  t.ok(value, 'the pre-verification session is stored')
  const code = codeFor(secret)
  t.equal((await a.post('/totp/verify', { code })).statusCode, 200)
  t.equal(await redis.get(sessionKey), null, 'S5: its id is gone')
  // what @fastify/session's rolling save does for a request that loaded the old session before
  await redis.set(sessionKey, value as string, 'PX', 60_000)
  const old = new Agent(app)
  old.cookie = before
  const replay = await old.post('/totp/verify', { code })
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'FST_TOTP_INVALID_CODE', 'a reused code, whichever session sends it')
  t.equal((await old.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'the old id stays unverified')
})
