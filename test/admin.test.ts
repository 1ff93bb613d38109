import { connect } from 'node:net'
import { AbilityBuilder, createMongoAbility } from '@casl/ability'
import t, { type Test } from 'tap'
import { MemoryTotpStore } from '../plugin/index.js'
import { Agent, awayFromStepEdge, build, codeFor, enrol, USERS } from './helpers.js'

type Action = 'read' | 'revoke' | 'enforce'
interface Case {
  actor: string
  actorTenant?: string
  target: string
  relation: string
  read: number
  revoke: number
  enforce: number
  reason?: RegExp
}

// Expected answers, from R4 (revoke: parent with ADMIN or CREATE, never oneself),
// R5 (enforce: ADMIN, never oneself) and R8 (read: oneself; READ or ADMIN; CREATE for one's children).
const TABLE: Case[] = [
  { actor: 'alice', target: 'alice', relation: 'self, no roles', read: 200, revoke: 403, enforce: 403, reason: /own secret/ },
  { actor: 'admin', target: 'admin', relation: 'self with ADMIN (root)', read: 200, revoke: 403, enforce: 403, reason: /own secret/ },
  { actor: 'admin', target: 'bob', relation: 'parent with ADMIN', read: 200, revoke: 204, enforce: 200 },
  { actor: 'admin', target: 'manager', relation: 'parent with ADMIN', read: 200, revoke: 204, enforce: 200 },
  { actor: 'manager', target: 'alice', relation: 'parent with CREATE (+READ)', read: 200, revoke: 204, enforce: 403 },
  { actor: 'creator', target: 'frank', relation: 'parent with CREATE only', read: 200, revoke: 204, enforce: 403 },
  { actor: 'reader', target: 'dave', relation: 'parent with READ only', read: 200, revoke: 403, enforce: 403, reason: /needs ADMIN or CREATE/ },
  { actor: 'admin', target: 'alice', relation: 'non-parent ADMIN (grandparent)', read: 200, revoke: 403, enforce: 200, reason: /only the parent/ },
  { actor: 'manager', target: 'bob', relation: 'non-parent CREATE (+READ)', read: 200, revoke: 403, enforce: 403, reason: /only the parent/ },
  { actor: 'creator', target: 'alice', relation: 'non-parent CREATE only', read: 403, revoke: 403, enforce: 403, reason: /only the parent/ },
  { actor: 'bob', target: 'alice', relation: 'no roles', read: 403, revoke: 403, enforce: 403, reason: /needs ADMIN or CREATE/ },
  { actor: 'eve', actorTenant: 'other', target: 'carol', relation: 'ADMIN of another tenant', read: 404, revoke: 404, enforce: 404 },
  { actor: 'eve', actorTenant: 'other', target: 'alice', relation: 'parent ADMIN in tenant other (same id as a default user)', read: 200, revoke: 204, enforce: 200 },
  { actor: 'admin', target: 'nobody', relation: 'unknown user', read: 404, revoke: 404, enforce: 404 }
]

const call = (a: Agent, action: Action, target: string) =>
  action === 'read'
    ? a.get(`/totp/users/${target}`)
    : action === 'revoke'
      ? a.delete(`/totp/users/${target}/secret`)
      : a.put(`/totp/users/${target}/enforcement`, { enforced: true })

for (const c of TABLE) {
  t.test(`R4/R5/R8 ${c.actor} → ${c.target} (${c.relation}): read ${c.read}, revoke ${c.revoke}, enforce ${c.enforce}`, async (t) => {
    const { app } = await build(t)
    for (const action of ['read', 'enforce', 'revoke'] as const) {
      const agent = new Agent(app)
      await agent.login(c.actor, c.actorTenant)
      const res = await call(agent, action, c.target)
      t.equal(res.statusCode, c[action], `${action}: ${res.body}`)
      if (c[action] === 403) t.equal(res.json().code, 'FST_TOTP_FORBIDDEN')
      if (c[action] === 404) t.equal(res.json().code, 'FST_TOTP_USER_NOT_FOUND')
      if (action === 'revoke' && c.revoke === 403 && c.reason !== undefined) t.match(res.json().message, c.reason, 'the reason names the rule')
      if (action === 'read' && c.read === 403) t.match(res.json().message, /^Forbidden: reading another user's status/, 'the reason, without the rule id')
    }
  })
}

t.test('R4 revocation reasons: enforcement needs ADMIN, nobody changes their own enforcement', async (t) => {
  const { app } = await build(t)
  const m = new Agent(app)
  await m.login('manager')
  t.match((await m.put('/totp/users/alice/enforcement', { enforced: true })).json().message, /^Forbidden: enforcing TOTP needs ADMIN/)
  const a = new Agent(app)
  await a.login('admin')
  t.match((await a.put('/totp/users/admin/enforcement', { enforced: true })).json().message, /own enforcement/)
})

t.test('R7 tenant settings: read by READ or ADMIN, changed by ADMIN', async (t) => {
  const { app } = await build(t)
  const expected: Array<[string, number, number]> = [['admin', 200, 200], ['manager', 200, 403], ['reader', 200, 403], ['creator', 403, 403], ['bob', 403, 403]]
  for (const [who, get, put] of expected) {
    const a = new Agent(app)
    await a.login(who)
    t.equal((await a.get('/totp/settings')).statusCode, get, `${who} GET`)
    const res = await a.put('/totp/settings', { enforceAll: false })
    t.equal(res.statusCode, put, `${who} PUT`)
    if (put === 403) t.match(res.json().message, /^Forbidden: tenant settings need ADMIN/)
  }
})

t.test('R8 status never contains a secret', async (t) => {
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const m = new Agent(app)
  await m.login('manager')
  const res = await m.get('/totp/users/alice')
  t.same(res.json(), { userId: 'alice', enabled: true, enforced: false, setupRequired: false, setupDeadline: null, locked: false, lockedUntil: null, recoveryCodesLeft: 0 })
  t.notOk(res.body.includes(secret))
})

t.test('R6 disabling TOTP: clear enforcement + revoke, and the user then signs in with no TOTP step at all', async (t) => {
  const { app, events } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const admin = new Agent(app)
  await admin.login('admin')
  t.equal((await admin.put('/totp/users/alice/enforcement', { enforced: true })).statusCode, 200)
  const before = new Agent(app)
  await before.login('alice')
  t.equal((await before.get('/api/profile')).statusCode, 401, 'enrolled: code step')
  // the seed's steps: clear "Enforce TOTP for the user" (ADMIN), revoke (parent: manager), save
  t.same((await admin.put('/totp/users/alice/enforcement', { enforced: false })).json(), { userId: 'alice', enforced: false })
  const manager = new Agent(app)
  await manager.login('manager')
  t.equal((await manager.delete('/totp/users/alice/secret')).statusCode, 204)
  const after = new Agent(app)
  await after.login('alice')
  t.equal((await after.get('/api/profile')).statusCode, 200, 'no TOTP step')
  t.same((await after.get('/totp/status')).json(), { enabled: false, enforced: false, verified: false, setupRequired: false, setupDeadline: null, locked: false, lockedUntil: null, recoveryCodesLeft: 0 })
  t.notOk(codeFor(secret) === '', 'secret was real')
  const adminEvents = events.filter((e) => ['enforcement.changed', 'secret.revoked'].includes(e.type as string))
  t.match(adminEvents, [
    { type: 'enforcement.changed', actorId: 'admin', userId: 'alice', enforced: true },
    { type: 'enforcement.changed', actorId: 'admin', userId: 'alice', enforced: false },
    { type: 'secret.revoked', actorId: 'manager', userId: 'alice', tenant: 'default' }
  ], 'S8 audit events with actor and target')
})

t.test('R5 enforcing a signed-in user without TOTP: that session gets 403 FST_TOTP_SETUP_REQUIRED, only setup works, then passes', async (t) => {
  const { app } = await build(t)
  const carol = new Agent(app)
  await carol.login('carol')
  t.equal((await carol.get('/api/profile')).statusCode, 200)
  const admin = new Agent(app)
  await admin.login('admin')
  await admin.put('/totp/users/carol/enforcement', { enforced: true })
  const gated = await carol.get('/api/profile')
  t.equal(gated.statusCode, 403)
  t.equal(gated.json().code, 'FST_TOTP_SETUP_REQUIRED')
  t.equal((await carol.post('/totp/verify', { code: '123456' })).statusCode, 403, 'verify is not a setup route')
  t.equal((await carol.get('/totp/settings')).statusCode, 403)
  t.match((await carol.get('/totp/status')).json(), { enabled: false, enforced: true, setupRequired: true })
  const setup = await carol.post('/totp/setup')
  t.equal(setup.statusCode, 201)
  t.equal((await carol.post('/totp/setup/confirm', { code: codeFor(setup.json().secret) })).statusCode, 200)
  t.equal((await carol.get('/api/profile')).statusCode, 200, 'after setup and confirmation it passes')
})

t.test('S1 every answer of the plugin\'s routes carries Cache-Control: no-store (setup answers the secret), the gate\'s refusals and errors included', async (t) => {
  const { app } = await build(t)
  const anonymous = await app.inject({ method: 'GET', url: '/totp/status' })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.headers['cache-control'], 'no-store', 'no first factor (the route answers)')
  const carol = new Agent(app)
  await carol.login('carol')
  const admin = new Agent(app)
  await admin.login('admin')
  await admin.put('/totp/users/carol/enforcement', { enforced: true })
  const refused = await carol.post('/totp/verify', { code: '123456' })
  t.equal(refused.json().code, 'FST_TOTP_SETUP_REQUIRED')
  t.equal(refused.headers['cache-control'], 'no-store', 'refused by the gate, before the routes\' scope')
  const alice = await enrol(app, 'alice')
  const fresh = new Agent(app)
  await fresh.login('alice')
  const unverified = await fresh.get('/totp/users/alice')
  t.equal(unverified.json().code, 'FST_TOTP_REQUIRED')
  t.equal(unverified.headers['cache-control'], 'no-store', 'an unverified session, refused by the gate')
  const malformed = await alice.agent.post('/totp/verify', { code: 'abc' })
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.headers['cache-control'], 'no-store', 'malformed input')
  const ok = await alice.agent.get('/totp/status')
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['cache-control'], 'no-store')
  t.equal((await alice.agent.get('/api/profile')).headers['cache-control'], undefined, 'the app\'s own routes are the app\'s business')
})

// A POST /totp/verify whose headers (and so the gate's read) arrive now and whose body comes
// later: `held` resolves once the gate has read (the request reached preParsing).
async function heldVerify (t: Test, named: boolean) {
  let reached!: () => void
  const held = new Promise<void>((resolve) => { reached = resolve })
  const { app, events } = await build(t, {
    before: (app) => app.addHook('preParsing', async (request, _reply, payload) => {
      if (request.headers['x-held'] === '1') reached()
      return payload
    })
  })
  const alice = await enrol(app, 'alice')
  const attacker = new Agent(app)
  await attacker.login('alice')
  // named: the session names its user (a gated request first), so the gate reads along with it
  if (named) t.equal((await attacker.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED')
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const socket = connect(Number(new URL(address).port), '127.0.0.1')
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { received += chunk })
  const answered = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.write(`POST /totp/verify HTTP/1.1\r\nhost: localhost\r\ncookie: ${attacker.cookie as string}\r\nx-held: 1\r\ncontent-type: application/json\r\ncontent-length: 17\r\nconnection: close\r\n\r\n`)
  await held
  // meanwhile: the parent revokes alice's secret, alice enrols a new one
  const manager = new Agent(app)
  await manager.login('manager')
  t.equal((await manager.delete('/totp/users/alice/secret')).statusCode, 204, 'revoked while the body is held')
  const setup = await alice.agent.post('/totp/setup')
  const fresh = setup.json().secret as string
  t.equal((await alice.agent.post('/totp/setup/confirm', { code: codeFor(fresh) })).statusCode, 200, 'alice enrols a new secret')
  const send = async (code: string): Promise<{ status: number, body: Record<string, unknown> }> => {
    socket.write(JSON.stringify({ code }))
    await answered
    return { status: Number(received.split(' ')[1]), body: JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) }
  }
  return { attacker, old: alice.secret, fresh, send, events }
}

for (const named of [false, true]) {
  const how = named ? 'the gate read along with the session' : 'the gate\'s own read'
  t.test(`R4 revocation: a /verify whose body arrives after the secret was revoked and replaced cannot verify with the revoked secret (${how})`, async (t) => {
    await awayFromStepEdge(8000)
    const { attacker, old, send } = await heldVerify(t, named)
    // the revoked secret's next code: a step newer than the new secret's confirming one
    const res = await send(codeFor(old, 1))
    t.equal(res.status, 401, 'checked again against the secret there now')
    t.match(res.body, { code: 'FST_TOTP_INVALID_CODE' })
    t.equal((await attacker.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'the session stays unverified')
  })
}

t.test('R4/S4 a /verify whose secret was replaced while its body was held: the new secret\'s code verifies, and the check against the old one charged nobody', async (t) => {
  await awayFromStepEdge(8000)
  const { attacker, fresh, send, events } = await heldVerify(t, true)
  const res = await send(codeFor(fresh, 1))
  t.equal(res.status, 200)
  t.same(res.body, { verified: true })
  t.notOk(events.some((e) => e.type === 'verify.failed'), 'no failure charged for the check against the revoked secret')
  t.equal(attacker.cookie !== undefined, true)
})

for (const between of [false, true]) {
  t.test(`R3/S5 a verified mark does not survive sign-out: signing in again as the same user in the same session (no destroy, no regenerate) asks for a code${between ? ' (a gated request in between)' : ''}`, async (t) => {
    // an app whose sign-out only forgets its user (both routes opted out of the gate)
    const { app } = await build(t, {
      before: (app) => app.post('/soft-logout', { config: { totp: false } }, async (request) => {
        request.session.set('uid' as never, undefined as never)
        return { ok: true }
      })
    })
    const alice = await enrol(app, 'alice')
    t.equal((await alice.agent.get('/api/profile')).statusCode, 200, 'verified')
    await alice.agent.post('/soft-logout')
    if (between) t.same((await alice.agent.get('/api/profile')).json(), { user: null, cart: 'app data' }, 'signed out: nobody to gate')
    await alice.agent.login('alice')
    const res = await alice.agent.get('/api/profile')
    t.equal(res.statusCode, 401, 'the password alone does not pass')
    t.equal(res.json().code, 'FST_TOTP_REQUIRED')
    t.match((await alice.agent.get('/totp/status')).json(), { enabled: true, verified: false })
    t.equal((await alice.agent.post('/totp/verify', { code: codeFor(alice.secret, 1) })).statusCode, 200, 'a code does')
  })
}

t.test('R3 an opted-out route answers whatever getUser does there (throws, rejects, a promise); a signed-out session loses its mark through an async getUser too', async (t) => {
  let mode: 'sync' | 'async' | 'throw' | 'reject' = 'sync'
  const { app } = await build(t, {
    plugin: {
      getUser: (request) => {
        const s = request.session.get('uid' as never) as unknown as { id: string } | undefined
        const user = s === undefined ? null : USERS.find((u) => u.id === s.id) ?? null
        if (mode === 'throw') throw new Error('getUser failed')
        if (mode === 'reject') return Promise.reject(new Error('getUser failed'))
        return mode === 'async' ? Promise.resolve(user) : user
      }
    },
    before: (app) => app.post('/soft-logout', { config: { totp: false } }, async (request) => {
      request.session.set('uid' as never, undefined as never)
      return { ok: true }
    })
  })
  const alice = await enrol(app, 'alice')
  for (const m of ['throw', 'reject'] as const) {
    mode = m
    t.equal((await alice.agent.get('/public')).statusCode, 200, `getUser ${m}s: the opted-out route answers`)
  }
  mode = 'sync'
  t.equal((await alice.agent.get('/api/profile')).statusCode, 200, 'the mark was kept for the gated request to judge')
  mode = 'async'
  await alice.agent.post('/soft-logout')
  await alice.agent.login('alice')
  t.equal((await alice.agent.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'signed out on an opted-out route: the mark went')
})

t.test('R4/R5/R10 nobody revokes their own secret, changes their own enforcement nor unlocks themselves, whatever the app\'s defineAbilities grants', async (t) => {
  // an app's own rules that grant everything to everyone
  const anything = (): never => {
    const b = new AbilityBuilder(createMongoAbility)
    b.can('manage', 'all')
    return b.build() as never
  }
  const { app } = await build(t, { plugin: { defineAbilities: anything } })
  const admin = await enrol(app, 'admin')
  const own = await admin.agent.delete('/totp/users/admin/secret')
  t.equal(own.statusCode, 403)
  t.match(own.json(), { code: 'FST_TOTP_FORBIDDEN', message: /^Forbidden: nobody revokes their own secret/ })
  const enforce = await admin.agent.put('/totp/users/admin/enforcement', { enforced: false })
  t.equal(enforce.statusCode, 403)
  t.match(enforce.json(), { code: 'FST_TOTP_FORBIDDEN', message: /^Forbidden: nobody changes their own enforcement/ })
  const unlock = await admin.agent.delete('/totp/users/admin/lock')
  t.equal(unlock.statusCode, 403)
  t.match(unlock.json(), { code: 'FST_TOTP_FORBIDDEN', message: /^Forbidden: nobody unlocks themselves/ })
  t.equal((await admin.agent.get('/totp/status')).json().enabled, true, 'the secret is still there')
  t.equal((await admin.agent.delete('/totp/users/alice/secret')).statusCode, 204, 'the app\'s rules decide the rest')
})

t.test('S6 a verification whose user\'s secret keeps changing under it fails closed with 503 after three reads', async (t) => {
  await awayFromStepEdge()
  const store = new MemoryTotpStore({
    lock: { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000, maxFailures: 20 }, ip: null
  })
  let attempts = 0
  let changing = false
  const custom = Object.assign(Object.create(store) as MemoryTotpStore, {
    attempt: async (...args: Parameters<MemoryTotpStore['attempt']>) => {
      if (!changing) return store.attempt(...args)
      attempts++
      return { ok: false as const, reason: 'changed' as const }
    }
  })
  const { app } = await build(t, { plugin: { store: custom } })
  const { secret } = await enrol(app, 'alice')
  changing = true
  const a = new Agent(app)
  await a.login('alice')
  const res = await a.post('/totp/verify', { code: codeFor(secret) })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
  t.equal(attempts, 3, 'three reads, three tries')
  t.equal((await a.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED')
})

t.test('R4 revoking a signed-in, verified user: the next request is treated as a user with no secret (or setup required where enforced)', async (t) => {
  const { app } = await build(t)
  const alice = await enrol(app, 'alice')
  const bob = await enrol(app, 'bob')
  t.equal((await alice.agent.get('/api/profile')).statusCode, 200)
  const admin = new Agent(app)
  await admin.login('admin')
  await admin.put('/totp/users/bob/enforcement', { enforced: true })
  const manager = new Agent(app)
  await manager.login('manager')
  t.equal((await manager.delete('/totp/users/alice/secret')).statusCode, 204)
  t.equal((await admin.delete('/totp/users/bob/secret')).statusCode, 204)
  const a = await alice.agent.get('/api/profile')
  t.equal(a.statusCode, 200, 'no secret, not enforced: passes')
  t.match((await alice.agent.get('/totp/status')).json(), { enabled: false, verified: false })
  const b = await bob.agent.get('/api/profile')
  t.equal(b.statusCode, 403)
  t.equal(b.json().code, 'FST_TOTP_SETUP_REQUIRED')
  // re-enrolled: the old verification does not count for the new secret
  const setup = await alice.agent.post('/totp/setup')
  t.equal(setup.statusCode, 201)
})

t.test('R7 tenant-wide enforcement: every user of the tenant without TOTP must set it up; other tenants untouched', async (t) => {
  const { app } = await build(t)
  const { agent: enrolled } = await enrol(app, 'alice')
  const admin = new Agent(app)
  await admin.login('admin')
  await app.totp.setSettings({ enforceAll: true }) // the operator: the ADMIN has no secret (see R7 enrol first)
  const bob = new Agent(app)
  await bob.login('bob')
  const otherAlice = new Agent(app)
  await otherAlice.login('alice', 'other')
  t.same((await bob.get('/totp/settings')).statusCode, 403)
  t.equal((await bob.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED')
  t.equal((await admin.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'the admin too')
  t.equal((await admin.get('/totp/settings')).statusCode, 403, 'admin routes are gated like the rest')
  t.equal((await enrolled.get('/api/profile')).statusCode, 200, 'enrolled and verified: passes')
  t.equal((await otherAlice.get('/api/profile')).statusCode, 200, 'tenant other untouched')
  await app.totp.setSettings({ enforceAll: false })
  t.equal((await bob.get('/api/profile')).statusCode, 200)
  t.same(await app.totp.getSettings(), { enforceAll: false, enforceRoles: [], gracePeriod: 0 })
})

t.test('R4 the operator decorator resets a root user (no parent), without ability checks', async (t) => {
  const { app, events } = await build(t)
  await enrol(app, 'admin')
  t.match(await app.totp.status('admin'), { userId: 'admin', enabled: true })
  t.equal(await app.totp.revoke('admin'), true)
  t.match(await app.totp.status('admin'), { enabled: false })
  t.equal(await app.totp.revoke('admin'), false)
  await app.totp.setEnforced('admin', true, { actorId: 'ops' })
  t.match(await app.totp.status('admin'), { enforced: true })
  t.match(events.filter((e) => e.type === 'enforcement.changed'), [{ actorId: 'ops', userId: 'admin' }])
  t.ok(app.totp.abilityFor({ id: 'x', roles: ['ROLE_USER_MANAGEMENT_ADMIN'] }).can('update', 'TotpSettings'))
})

t.test('two Fastify instances on one Redis: a change made through one is obeyed by the other on the next request', async (t) => {
  const one = await build(t)
  const two = await build(t, { keyPrefix: one.keyPrefix })
  const { agent, secret } = await enrol(one.app, 'alice')
  // the same browser session, now served by instance two
  const onTwo = new Agent(two.app)
  onTwo.cookie = agent.cookie
  t.equal((await onTwo.get('/api/profile')).statusCode, 200, 'verified on one, passes on two')
  const admin = new Agent(one.app)
  await admin.login('admin')
  await admin.put('/totp/users/carol/enforcement', { enforced: true })
  const carol = new Agent(two.app)
  await carol.login('carol')
  t.equal((await carol.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'enforcement set on one, obeyed on two')
  const manager = new Agent(one.app)
  await manager.login('manager')
  await manager.delete('/totp/users/alice/secret')
  t.match((await onTwo.get('/totp/status')).json(), { enabled: false, verified: false }, 'revocation on one, obeyed on two')
  await one.app.totp.setSettings({ enforceAll: true })
  t.equal((await onTwo.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'tenant setting on one, obeyed on two')
  t.ok(secret)
})

t.test('defineAbilities: an app can extend the default rules (ancestors may revoke) but not lift the self rule', async (t) => {
  const { defineTotpAbilities } = await import('../plugin/index.js')
  const withAncestors = (users: Record<string, string | null>) => (id: string): string[] => {
    const out: string[] = []
    for (let p = users[id]; p != null; p = users[p]) out.push(p)
    return out
  }
  const parents = { admin: null, manager: 'admin', alice: 'manager' }
  const ancestors = withAncestors(parents)
  const { app } = await build(t, {
    users: Object.entries(parents).map(([id, parentId]) => ({ id, parentId, ancestorIds: ancestors(id), roles: id === 'alice' ? [] : ['ROLE_USER_MANAGEMENT_ADMIN'] })),
    plugin: {
      defineAbilities: (user) => defineTotpAbilities(user, (b, u) => {
        b.can('revoke', 'TotpSecret', { tenant: u.tenant ?? 'default', ancestorIds: u.id } as never)
        b.can('revoke', 'TotpSecret', { userId: u.id })
      })
    }
  })
  const admin = new Agent(app)
  await admin.login('admin')
  t.equal((await admin.delete('/totp/users/alice/secret')).statusCode, 204, 'grandparent may revoke')
  t.equal((await admin.delete('/totp/users/admin/secret')).statusCode, 403, 'still never oneself')
})
