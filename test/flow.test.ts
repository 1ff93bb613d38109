import t from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'

t.test('R1 self-enrolment: setup gives secret, otpauth URI and PNG QR; the confirming code activates it', async (t) => {
  const { app } = await build(t)
  const agent = new Agent(app)
  await agent.login('alice')
  t.same((await agent.get('/totp/status')).json(), { enabled: false, enforced: false, verified: false, setupRequired: false, setupDeadline: null, locked: false, lockedUntil: null, recoveryCodesLeft: 0 })
  const setup = await agent.post('/totp/setup')
  t.equal(setup.statusCode, 201)
  t.equal(setup.headers['cache-control'], 'no-store')
  const body = setup.json()
  t.match(body.secret, /^[A-Z2-7]{32}$/, '160-bit base32 secret')
  t.match(body.uri, /^otpauth:\/\/totp\/fastify-totp-gate:alice\?/)
  t.match(body.uri, /issuer=fastify-totp-gate/)
  t.match(body.qr, /^data:image\/png;base64,/)
  t.ok(Date.parse(body.expiresAt) > Date.now() + 9 * 60_000, 'pending for 10 minutes')
  t.equal((await agent.get('/totp/status')).json().enabled, false, 'pending is not active')
  const confirm = await agent.post('/totp/setup/confirm', { code: codeFor(body.secret) })
  t.equal(confirm.statusCode, 200)
  t.same(confirm.json(), { enabled: true, verified: true })
  t.same((await agent.get('/totp/status')).json(), { enabled: true, enforced: false, verified: true, setupRequired: false, setupDeadline: null, locked: false, lockedUntil: null, recoveryCodesLeft: 0 })
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'the enrolling session is verified')
})

t.test('R1 a wrong confirming code does not activate; no pending setup answers 404', async (t) => {
  const { app } = await build(t)
  const agent = new Agent(app)
  await agent.login('alice')
  t.equal((await agent.post('/totp/setup/confirm', { code: '123456' })).json().code, 'FST_TOTP_NO_PENDING_SETUP')
  const { secret } = (await agent.post('/totp/setup')).json()
  const wrong = codeFor(secret) === '000000' ? '111111' : '000000'
  const res = await agent.post('/totp/setup/confirm', { code: wrong })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_TOTP_INVALID_CODE')
  t.equal((await agent.get('/totp/status')).json().enabled, false)
})

t.test('R1 a pending setup expires', async (t) => {
  const { app } = await build(t, { plugin: { setupTtl: 1 } })
  const agent = new Agent(app)
  await agent.login('alice')
  const { secret } = (await agent.post('/totp/setup')).json()
  await new Promise((resolve) => setTimeout(resolve, 1200))
  const res = await agent.post('/totp/setup/confirm', { code: codeFor(secret) })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'FST_TOTP_NO_PENDING_SETUP')
})

t.test('R2 a user with an active secret cannot set up again (409) nor replace it', async (t) => {
  const { app } = await build(t)
  const { agent, secret } = await enrol(app, 'alice')
  const again = await agent.post('/totp/setup')
  t.equal(again.statusCode, 409)
  t.equal(again.json().code, 'FST_TOTP_ALREADY_ENABLED')
  const confirm = await agent.post('/totp/setup/confirm', { code: codeFor(secret) })
  t.equal(confirm.statusCode, 409)
  t.equal((await agent.delete('/totp/users/alice/secret')).statusCode, 403, 'nor revoke it')
})

t.test('R3 gate: a new session of an enrolled user gets 401 FST_TOTP_REQUIRED until it verifies, then passes', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  const gated = await agent.get('/api/profile')
  t.equal(gated.statusCode, 401)
  t.equal(gated.json().code, 'FST_TOTP_REQUIRED')
  t.equal((await agent.get('/no-such-route')).statusCode, 401, 'unknown routes are protected too')
  t.equal((await agent.post('/totp/setup')).statusCode, 401, 'setup is gated too')
  t.equal((await agent.get('/public')).statusCode, 200, 'config: { totp: false } opts out')
  const status = await agent.get('/totp/status')
  t.equal(status.statusCode, 200)
  t.same(status.json(), {
    enabled: true,
    enforced: false,
    verified: false,
    setupRequired: false,
    setupDeadline: null,
    locked: false,
    lockedUntil: null,
    recoveryCodesLeft: 0
  })
  const verify = await agent.post('/totp/verify', { code: codeFor(secret) })
  t.equal(verify.statusCode, 200)
  t.same(verify.json(), { verified: true })
  const profile = await agent.get('/api/profile')
  t.equal(profile.statusCode, 200)
  t.equal(profile.json().user, 'alice')
})

t.test('R3 a user neither enrolled nor enforced passes; no first factor answers 401 FST_TOTP_UNAUTHENTICATED on plugin routes', async (t) => {
  const { app } = await build(t)
  const bob = new Agent(app)
  await bob.login('bob')
  t.equal((await bob.get('/api/profile')).statusCode, 200)
  const anon = new Agent(app)
  for (const [method, url] of [['GET', '/totp/status'], ['POST', '/totp/setup'], ['GET', '/totp/settings']] as const) {
    const res = await anon.request(method, url)
    t.equal(res.statusCode, 401, `${method} ${url}`)
    t.equal(res.json().code, 'FST_TOTP_UNAUTHENTICATED')
  }
  const verify = await anon.post('/totp/verify', { code: '123456' })
  t.equal(verify.json().code, 'FST_TOTP_UNAUTHENTICATED')
})

t.test('R3 verify for a user without TOTP answers 409 FST_TOTP_NOT_ENABLED', async (t) => {
  const { app } = await build(t)
  const bob = new Agent(app)
  await bob.login('bob')
  const res = await bob.post('/totp/verify', { code: '123456' })
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'FST_TOTP_NOT_ENABLED')
})

t.test('S5 the session id changes when a code is verified or a setup confirmed; the app data survives', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const agent = new Agent(app)
  await agent.login('alice')
  const first = agent.cookie
  const { secret } = (await agent.post('/totp/setup')).json()
  await agent.post('/totp/setup/confirm', { code: codeFor(secret, -1) })
  t.not(agent.cookie, first, 'new id after setup confirmation')

  const other = new Agent(app)
  await other.login('alice')
  const before = other.cookie
  const fixed = new Agent(app)
  fixed.cookie = before // an attacker who planted this id
  t.equal((await other.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  t.not(other.cookie, before, 'new id after verification')
  const profile = await other.get('/api/profile')
  t.equal(profile.statusCode, 200)
  t.equal(profile.json().cart, 'app data', 'first-factor data kept')
  t.equal((await fixed.get('/api/profile')).json().user, null, 'the old id is no session at all any more')
})

t.test('S3/S5/S6 a session id change that fails fails the request and leaves no verified session behind; its step stays used (the same code is a replay), the next code completes it', async (t) => {
  await awayFromStepEdge()
  let failDestroy = false
  const { app } = await build(t, {
    sessions: (store) => ({
      get: store.get.bind(store),
      set: store.set.bind(store),
      destroy: (id, done) => failDestroy ? done(new Error('destroy failed')) : store.destroy(id, done)
    })
  })
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  const before = agent.cookie
  failDestroy = true
  const code = codeFor(secret)
  const res = await agent.post('/totp/verify', { code })
  t.equal(res.statusCode, 500, 'the error of the session store comes through: not a pass')
  t.equal((await agent.get('/api/profile')).statusCode, 401, 'whichever session the answer left: not verified')
  const old = new Agent(app)
  old.cookie = before
  t.equal((await old.get('/api/profile')).statusCode, 401, 'the old id is not verified either')
  failDestroy = false
  const again = await old.post('/totp/verify', { code })
  t.equal(again.json().code, 'FST_TOTP_INVALID_CODE', 'a step is consumed once, even by the session that consumed it')
  t.equal((await old.post('/totp/verify', { code: codeFor(secret, 1) })).statusCode, 200, 'the next code completes it')
  t.equal((await old.get('/api/profile')).statusCode, 200)
})

t.test('S8 audit events for enrolment, verification and failures', async (t) => {
  await awayFromStepEdge()
  const { app, events } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  await agent.post('/totp/verify', { code: codeFor(secret) === '000000' ? '111111' : '000000' })
  await agent.post('/totp/verify', { code: codeFor(secret) })
  t.same(events.map((e) => e.type), ['setup.started', 'setup.confirmed', 'verify.failed', 'verify.succeeded'])
  t.match(events[2], { tenant: 'default', userId: 'alice', failures: 1, ip: '127.0.0.1' })
  t.notOk(JSON.stringify(events).includes(secret), 'no secret in events')
})
