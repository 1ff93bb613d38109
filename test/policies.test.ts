import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol, newPrefix, REDIS_URL, wrongCode } from './helpers.js'

// R11–R15: enforcement policies over HTTP against real Redis.

const redis = new Redis(REDIS_URL)
t.teardown(() => redis.disconnect())
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** An app's routes with a policy: a required one and a step-up one. */
const policyRoutes = (maxAge: number) => (app: FastifyInstance): void => {
  app.get('/api/payments', { config: { totp: { required: true } } }, async () => ({ ok: 'payments' }))
  app.get('/api/transfer', { config: { totp: { maxAge } } }, async () => ({ ok: 'transfer' }))
}

/** A browser that also keeps the trusted-device cookie. */
class Browser extends Agent {
  device: string | undefined
  override async request (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown,
    headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const cookies = [this.cookie, this.device === undefined ? undefined : `totp_device=${this.device}`]
      .filter((c) => c !== undefined).join('; ')
    const res = await super.request(method, url, payload, cookies === '' ? headers : { cookie: cookies, ...headers })
    const set = res.cookies.find((c) => c.name === 'totp_device')
    if (set !== undefined) this.device = set.value === '' ? undefined : set.value
    return res
  }
}

t.test('R11 a required route refuses users without TOTP (403), enforced or not; an enrolled user needs a verified session', async (t) => {
  const { app } = await build(t, { before: policyRoutes(3600) })
  const bob = new Agent(app)
  await bob.login('bob')
  t.equal((await bob.get('/api/profile')).statusCode, 200, 'not enforced: other routes answer')
  const refused = await bob.get('/api/payments')
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().code, 'FST_TOTP_SETUP_REQUIRED')
  t.equal(refused.headers['cache-control'], 'no-store')
  const { agent } = await enrol(app, 'alice')
  t.same((await agent.get('/api/payments')).json(), { ok: 'payments' })
  const unverified = new Agent(app)
  await unverified.login('alice')
  t.equal((await unverified.get('/api/payments')).json().code, 'FST_TOTP_REQUIRED')
})

t.test('R12 step-up: a route with maxAge needs a code verified that recently; POST /totp/verify in a verified session renews it', async (t) => {
  const { app } = await build(t, { before: policyRoutes(1) })
  await awayFromStepEdge(5000)
  const { agent, secret } = await enrol(app, 'alice')
  t.equal((await agent.get('/api/transfer')).statusCode, 200, 'just verified (the confirming code)')
  await sleep(1100)
  const stale = await agent.get('/api/transfer')
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_TOTP_STEP_UP_REQUIRED')
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'other routes still answer: the session is verified')
  t.equal((await agent.post('/totp/verify', { code: codeFor(secret, -1) })).statusCode, 401, 'S3 the used code does not renew it')
  t.equal((await agent.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  t.equal((await agent.get('/api/transfer')).statusCode, 200, 'renewed')
  const bob = new Agent(app)
  await bob.login('bob')
  t.equal((await bob.get('/api/transfer')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'a step-up route requires TOTP')
})

t.test('R12 verifiedFor: a verified session must verify again after that long', async (t) => {
  const { app } = await build(t, { plugin: { verifiedFor: 1 } })
  await awayFromStepEdge(5000)
  const { agent, secret } = await enrol(app, 'alice')
  t.equal((await agent.get('/api/profile')).statusCode, 200)
  await sleep(1100)
  t.equal((await agent.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED')
  t.match((await agent.get('/totp/status')).json(), { verified: false })
  t.equal((await agent.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  t.equal((await agent.get('/api/profile')).statusCode, 200)
  await t.rejects(build(t, { redis, plugin: { verifiedFor: 0 } }), { code: 'FST_TOTP_OPTIONS' })
})

t.test('R13 a user holding a role in enforceRoles must set TOTP up; the settings are ADMIN\'s (R7)', async (t) => {
  const { app, events } = await build(t)
  const admin = await enrol(app, 'admin')
  const reader = new Agent(app)
  await reader.login('reader')
  t.equal((await reader.put('/totp/settings', { enforceRoles: ['ROLE_USER_MANAGEMENT_READ'] })).statusCode, 403, 'READ may not')
  t.equal((await reader.get('/totp/settings')).statusCode, 200, 'READ reads them')
  const put = await admin.agent.put('/totp/settings', { enforceRoles: ['ROLE_USER_MANAGEMENT_READ'] })
  t.same(put.json(), { enforceAll: false, enforceRoles: ['ROLE_USER_MANAGEMENT_READ'], gracePeriod: 0 })
  t.same((await admin.agent.get('/totp/settings')).json(), put.json())
  t.equal((await reader.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'the role holder is enforced')
  t.match((await reader.get('/totp/status')).json(), { enabled: false, enforced: true, setupRequired: true, setupDeadline: null })
  const bob = new Agent(app)
  await bob.login('bob')
  t.equal((await bob.get('/api/profile')).statusCode, 200, 'a user without the role is not')
  t.match(await app.totp.status({ id: 'reader', roles: ['ROLE_USER_MANAGEMENT_READ'] }),
    { setupRequired: true }, 'the operator status counts roles when given the user')
  t.match((await admin.agent.get('/totp/users/reader')).json(), { setupRequired: true }, 'and so does the admin route')
  t.match(events.find((e) => e.type === 'settings.changed'), { enforceRoles: ['ROLE_USER_MANAGEMENT_READ'], actorId: 'admin' })
  for (const bad of [{ enforceRoles: ['a\nb'] }, { enforceRoles: 'x' }, { enforceRoles: [''] }, { gracePeriod: -1 }, {}]) {
    t.equal((await admin.agent.put('/totp/settings', bad)).statusCode, 400, JSON.stringify(bad))
  }
  // an ADMIN without TOTP cannot enforce a role they hold on themselves (ENROL_FIRST)
  const other = await build(t)
  const bare = new Agent(other.app)
  await bare.login('admin')
  t.equal((await bare.put('/totp/settings', { enforceRoles: ['ROLE_USER_MANAGEMENT_ADMIN'] })).json().code, 'FST_TOTP_ENROL_FIRST')
  t.equal((await bare.put('/totp/settings', { enforceRoles: ['ROLE_NOBODY'] })).statusCode, 200, 'a role they do not hold is fine')
})

t.test('R14 grace period: an enforced user without TOTP keeps working until the deadline, counted from the first request seen enforced', async (t) => {
  const { app } = await build(t)
  await app.totp.setSettings({ enforceAll: true, gracePeriod: 1 })
  const bob = new Agent(app)
  await bob.login('bob')
  const start = Date.now()
  t.equal((await bob.get('/api/profile')).statusCode, 200, 'within the grace period')
  const status = (await bob.get('/totp/status')).json()
  t.match(status, { enabled: false, enforced: true, setupRequired: true })
  const deadline = Date.parse(status.setupDeadline)
  t.ok(deadline >= start + 900 && deadline <= Date.now() + 1000, `deadline ${status.setupDeadline}`)
  t.match(await app.totp.status('bob'), { setupDeadline: status.setupDeadline }, 'the operator sees it')
  await sleep(Math.max(0, deadline - Date.now()) + 50)
  t.equal((await bob.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'after it, 403 as without a grace period')
  const { agent } = await enrol(app, 'bob')
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'set up: it passes')
  t.match(await app.totp.status('bob'), { setupRequired: false, setupDeadline: null })
})

t.test('R15 a trusted browser passes later sign-ins without a code; HttpOnly SameSite cookie; never for step-up, another user, or after revocation', async (t) => {
  const { app, events } = await build(t, { plugin: { trustDevice: { days: 30 } }, before: policyRoutes(3600) })
  await awayFromStepEdge(5000)
  const { secret } = await enrol(app, 'alice')
  const b = new Browser(app)
  await b.login('alice')
  const res = await b.post('/totp/verify', { code: codeFor(secret), trustDevice: true })
  t.equal(res.statusCode, 200)
  const cookie = res.cookies.find((c) => c.name === 'totp_device')!
  t.match(cookie, { httpOnly: true, sameSite: 'Lax', path: '/' })
  t.notOk(cookie.secure, 'not Secure over plain http (Secure when the request is https)')
  t.equal(cookie.maxAge, 30 * 86400)
  t.equal((await b.post('/logout')).statusCode, 200)
  await b.login('alice')
  const before = b.cookie
  t.same((await b.get('/api/profile')).json(), { user: 'alice', cart: 'app data' }, 'signed in again: no code asked')
  t.not(b.cookie, before, 'S5 the session got a new id')
  t.match((await b.get('/totp/status')).json(), { verified: true })
  t.equal((await b.get('/api/transfer')).json().code, 'FST_TOTP_STEP_UP_REQUIRED', 'never satisfies step-up')
  const guesser = new Agent(app)
  await guesser.login('alice')
  for (let i = 0; i < 5; i++) await guesser.post('/totp/verify', { code: wrongCode(secret) })
  t.match(await app.totp.status('alice'), { locked: true })
  const locked = new Browser(app)
  locked.device = b.device
  await locked.login('alice')
  t.equal((await locked.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'a locked user is not passed by a device')
  await app.totp.unlock('alice')
  t.equal(events.filter((e) => e.type === 'device.used').length, 1)
  const list = (await b.get('/totp/devices')).json().devices
  t.match(list, [{ id: res.json().deviceId, current: true }])

  const { secret: bobSecret } = await enrol(app, 'bob')
  const thief = new Browser(app)
  thief.device = b.device
  await thief.login('bob')
  t.equal((await thief.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'useless in another user\'s session')
  t.ok(bobSecret.length > 0)

  const manager = await enrol(app, 'manager')
  t.equal((await manager.agent.delete('/totp/users/alice/secret')).statusCode, 204)
  const { agent: reenrolled } = await enrol(app, 'alice')
  t.same((await reenrolled.get('/totp/devices')).json(), { devices: [] }, 'revocation dropped every device')
  const c = new Browser(app)
  c.device = b.device
  await c.login('alice')
  t.equal((await c.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'an old device does not pass after re-enrolment')
})

t.test('R15 a forgotten device no longer passes; trustDevice off: the field is refused', async (t) => {
  const { app } = await build(t, { plugin: { trustDevice: true } })
  await awayFromStepEdge(5000)
  const { secret } = await enrol(app, 'alice')
  const b = new Browser(app)
  await b.login('alice')
  const id = (await b.post('/totp/verify', { code: codeFor(secret), trustDevice: true })).json().deviceId
  t.equal((await b.delete('/totp/devices/nosuchdevice')).statusCode, 404)
  t.equal((await b.delete(`/totp/devices/${id}`)).statusCode, 204)
  t.equal(b.device, undefined, 'the cookie is cleared when it is this browser\'s')
  const c = new Browser(app)
  c.device = `${id}.${'x'.repeat(43)}`
  await c.login('alice')
  t.equal((await c.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'a forged or forgotten device does not pass')
  const off = await build(t)
  const o = await enrol(off.app, 'alice')
  t.equal((await o.agent.post('/totp/verify', { code: codeFor(o.secret, 1), trustDevice: true })).statusCode, 400)
  t.equal((await o.agent.get('/totp/devices')).statusCode, 404, 'no device routes when off')
})

t.test('R13/R14 app.totp.statuses answers many users in order, roles counted', async (t) => {
  const keyPrefix = newPrefix()
  const { app, users } = await build(t, { keyPrefix })
  await enrol(app, 'alice')
  await app.totp.setEnforced('carol', true)
  await app.totp.setSettings({ enforceRoles: ['ROLE_USER_MANAGEMENT_CREATE'] })
  const all = users.filter((u) => (u.tenant ?? 'default') === 'default')
  const s = await app.totp.statuses(all)
  t.same(s.map((x) => x.userId), all.map((u) => u.id))
  const by = Object.fromEntries(s.map((x) => [x.userId, x]))
  t.match(by.alice, { enabled: true, setupRequired: false })
  t.match(by.carol, { enabled: false, enforced: true, setupRequired: true })
  t.match(by.creator, { enabled: false, enforced: false, setupRequired: true }, 'by role')
  t.match(by.bob, { enabled: false, setupRequired: false })
  t.same((await app.totp.statuses(['alice', 'creator'])).map((x) => x.setupRequired), [false, false], 'ids: roles unknown')
})

t.test('R12 a maxAge that is not a number of seconds is refused when the route is declared (no silent pass)', async (t) => {
  for (const maxAge of ['300', '5m', Number.NaN, 0, -1]) {
    await t.rejects(build(t, { redis, before: (a) => { a.get('/x', { config: { totp: { maxAge: maxAge as number } } }, async () => 'x') } }),
      { code: 'FST_TOTP_OPTIONS', message: /maxAge/ }, `maxAge ${String(maxAge)}`)
  }
  await t.rejects(build(t, { redis, before: (a) => { a.get('/y', { config: { totp: { required: 'yes' as never } } }, async () => 'y') } }),
    { code: 'FST_TOTP_OPTIONS' })
})

t.test('R14 the deadline follows the grace period as set now: lowering it to 0 ends every running grace', async (t) => {
  const { app } = await build(t)
  await app.totp.setSettings({ enforceAll: true, gracePeriod: 86400 })
  const bob = new Agent(app)
  await bob.login('bob')
  t.equal((await bob.get('/api/profile')).statusCode, 200, 'within a day\'s grace')
  await app.totp.setSettings({ gracePeriod: 0 })
  t.equal((await bob.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'no grace any more')
  await app.totp.setSettings({ gracePeriod: 86400 })
  t.equal((await bob.get('/api/profile')).statusCode, 200, 'a day again, from the first request seen')
})

t.test('R13 roles of another shape than an array of strings are refused (FST_TOTP_BAD_USER), never read as none', async (t) => {
  const users = [{ id: 'odd', parentId: null, roles: 'ROLE_X' as unknown as string[] }]
  const { app } = await build(t, { users })
  const a = new Agent(app)
  await a.login('odd')
  const res = await a.get('/api/profile')
  t.equal(res.statusCode, 500)
  t.equal(res.json().code, 'FST_TOTP_BAD_USER')
})
