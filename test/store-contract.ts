import type { Test } from 'tap'
import type { TotpStore } from '../plugin/stores/store.js'
import { DEFAULT_LOCKOUT } from '../plugin/options.js'
import type { StorePolicy } from '../plugin/stores/store.js'

export const POLICY: StorePolicy = {
  lock: { freeFailures: 3, lockMs: 150, maxLockMs: 500 },
  ip: { maxFailures: 4, windowMs: 60_000 }
}
export const DEFAULT_POLICY: StorePolicy = {
  lock: { freeFailures: DEFAULT_LOCKOUT.freeFailures, lockMs: DEFAULT_LOCKOUT.lockSeconds * 1000, maxLockMs: DEFAULT_LOCKOUT.maxLockSeconds * 1000 },
  ip: null
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0
const ref = (tenant = 'default') => ({ tenant, userId: `user-${process.pid}-${Date.now()}-${n++}` })

/** The store contract: every implementation (memory, Redis, Redis Cluster) must pass it. */
export function storeContract (t: Test, name: string, make: (policy: StorePolicy) => Promise<TotpStore>): void {
  t.test(`${name}: R1 setup is pending until confirmed; confirming activates and counts the step as used (S3)`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    t.same(await s.gate(u), { enabled: false, enforced: false, enforceAll: false, gen: 0, lockedUntil: 0 })
    t.equal(await s.startSetup(u, 'sealed-1', 60_000), 'ok')
    t.match(await s.load(u), { sealed: null, pending: 'sealed-1', lastStep: -1, lockedForMs: 0 })
    t.equal(await s.startSetup(u, 'sealed-2', 60_000), 'ok', 'a restarted setup replaces the pending one')
    t.same(await s.confirmSetup(u, 'sealed-1', 100), { ok: false, reason: 'no-pending' }, 'stale pending secret refused')
    t.same(await s.confirmSetup(u, 'sealed-2', 100), { ok: true, gen: 1 })
    t.match(await s.load(u), { sealed: 'sealed-2', pending: null, lastStep: 100 })
    t.match(await s.gate(u), { enabled: true, gen: 1 })
    t.equal(await s.startSetup(u, 'sealed-3', 60_000), 'already-enabled', 'R2')
    t.same(await s.confirmSetup(u, 'sealed-2', 101), { ok: false, reason: 'already-enabled' })
    t.match(await s.consume(u, 100, 1), { ok: false, reason: 'failed' }, 'the confirming step is used')
  })

  t.test(`${name}: R1 a pending setup expires`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, 'p', 100)
    await sleep(150)
    t.equal((await s.load(u)).pending, null)
    t.same(await s.confirmSetup(u, 'p', 5), { ok: false, reason: 'no-pending' })
  })

  t.test(`${name}: S3 the last accepted step only grows; of N racing consumes of one step exactly one wins`, async (t) => {
    // the 19 losers are charged as reused codes: allow them without a lock here
    const s = await make({ ...POLICY, lock: { ...POLICY.lock, freeFailures: 100 } })
    const u = ref()
    await s.startSetup(u, 'x', 60_000)
    await s.confirmSetup(u, 'x', 10)
    const results = await Promise.all(Array.from({ length: 20 }, () => s.consume(u, 11, 1)))
    t.equal(results.filter((r) => r.ok).length, 1)
    t.match(await s.consume(u, 12, 1), { ok: true })
    t.match(await s.consume(u, 11, 1), { ok: false, reason: 'failed' }, 'older step refused')
    t.equal((await s.load(u)).lastStep, 12)
    t.same(await s.consume(ref(), 1, 0), { ok: false, reason: 'not-enabled' })
  })

  t.test(`${name}: S3 a step is consumed once, whoever asks again; R4 a code checked under another generation (revoked or replaced since) consumes and charges nothing`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, 'x', 60_000)
    t.same(await s.confirmSetup(u, 'x', 10), { ok: true, gen: 1 })
    t.match(await s.consume(u, 10, 1), { ok: false, reason: 'failed', failures: 1 }, 'the confirming step, asked again: a replay')
    t.same(await s.consume(u, 11, 1), { ok: true, gen: 1 })
    t.match(await s.consume(u, 11, 1), { ok: false, reason: 'failed', failures: 1 }, 'a consumed step, asked again: a replay')
    t.same(await s.consume(u, 12, 0), { ok: false, reason: 'changed' }, 'checked under an older generation')
    t.same(await s.consume(u, 12, 2), { ok: false, reason: 'changed' }, 'or any other')
    t.equal((await s.load(u)).lastStep, 11, 'nothing consumed')
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 2, lockedForMs: 0 }, 'nothing charged')
    await s.revoke(u)
    t.same(await s.consume(u, 12, 1), { ok: false, reason: 'not-enabled' }, 'revoked since')
    await s.startSetup(u, 'y', 60_000)
    t.same(await s.confirmSetup(u, 'y', 12), { ok: true, gen: 3 })
    t.same(await s.consume(u, 13, 1), { ok: false, reason: 'changed' }, 'replaced since: a code checked against the old secret')
    t.same(await s.consume(u, 13, 3), { ok: true, gen: 3 }, 'checked against the secret there now')
  })

  t.test(`${name}: S4 failures lock from the free-th on, doubling, capped; locked attempts are not charged; success resets`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, 'x', 60_000)
    await s.confirmSetup(u, 'x', 10)
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 1, lockedForMs: 0 })
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 2, lockedForMs: 0 })
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 3, lockedForMs: 150 })
    const locked = await s.fail(u)
    t.match(locked, { ok: false, reason: 'locked' })
    t.ok((locked as any).retryAfterMs > 0 && (locked as any).retryAfterMs <= 150)
    t.match(await s.consume(u, 11, 1), { ok: false, reason: 'locked' }, 'a right code is not checked while locked')
    t.ok((await s.gate(u)).lockedUntil > Date.now())
    t.ok((await s.load(u)).lockedForMs > 0)
    await sleep(160)
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 4, lockedForMs: 300 }, 'doubles')
    await sleep(310)
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 5, lockedForMs: 500 }, 'capped')
    await sleep(510)
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 6, lockedForMs: 500 })
    await sleep(510)
    t.same(await s.consume(u, 11, 1), { ok: true, gen: 1 })
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 1, lockedForMs: 0 }, 'reset by the success')
  })

  t.test(`${name}: S4 default policy: 5 free failures, then 30 s`, async (t) => {
    const s = await make(DEFAULT_POLICY)
    const u = ref()
    const r = []
    for (let i = 0; i < 5; i++) r.push(await s.fail(u))
    t.same(r.map((x: any) => x.lockedForMs), [0, 0, 0, 0, 30_000])
    t.match(await s.fail(u), { reason: 'locked' })
    t.equal(await s.failIp('1.2.3.4'), 0, 'no IP budget when off')
    t.equal(await s.ipBlocked('1.2.3.4'), 0)
  })

  t.test(`${name}: S4 per-IP budget`, async (t) => {
    const s = await make(POLICY)
    const ip = `10.0.${n++ % 250}.${process.pid % 250}`
    for (let i = 0; i < 3; i++) t.equal(await s.failIp(ip), 0)
    t.equal(await s.ipBlocked(ip), 0)
    t.ok(await s.failIp(ip) > 59_000)
    t.ok(await s.ipBlocked(ip) > 59_000)
  })

  t.test(`${name}: S3/S4 check reads what gate, load and ipBlocked read, at once`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    const ip = `10.1.${n++ % 250}.${process.pid % 250}`
    t.same(await s.check(u, ip), { gate: await s.gate(u), secret: await s.load(u), ipBlockedMs: 0 }, 'a stranger')
    await s.startSetup(u, 'sealed-p', 60_000)
    t.same(await s.check(u, ip), { gate: await s.gate(u), secret: await s.load(u), ipBlockedMs: 0 }, 'a pending setup')
    await s.confirmSetup(u, 'sealed-p', 7)
    await s.setEnforced(u, true)
    for (let i = 0; i < 3; i++) await s.fail(u)
    for (let i = 0; i < 4; i++) await s.failIp(ip)
    const c = await s.check(u, ip)
    t.match(c, { gate: { enabled: true, enforced: true, gen: 1 }, secret: { sealed: 'sealed-p', pending: null, lastStep: 7, gen: 1 } })
    t.ok(c.secret.lockedForMs > 0 && c.secret.lockedForMs <= 150, 'the lock left')
    t.equal(c.gate.lockedUntil > Date.now(), true)
    t.ok(c.ipBlockedMs > 59_000, 'the IP\'s budget is spent')
    t.same({ ...c, secret: { ...c.secret, lockedForMs: 0 }, ipBlockedMs: 0 }, { gate: await s.gate(u), secret: { ...await s.load(u), lockedForMs: 0 }, ipBlockedMs: 0 })
  })

  t.test(`${name}: S4 failAttempt charges user and IP at once; a locked user is not charged, the IP is`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    const ip = `10.2.${n++ % 250}.${process.pid % 250}`
    t.same(await s.failAttempt(u, ip, 0), { user: { ok: false, reason: 'failed', failures: 1, lockedForMs: 0 }, ipBlockedMs: 0 })
    t.same(await s.failAttempt(u, ip, 0), { user: { ok: false, reason: 'failed', failures: 2, lockedForMs: 0 }, ipBlockedMs: 0 })
    t.same(await s.failAttempt(u, ip, 0), { user: { ok: false, reason: 'failed', failures: 3, lockedForMs: 150 }, ipBlockedMs: 0 })
    const locked = await s.failAttempt(u, ip, 0)
    t.match(locked, { user: { ok: false, reason: 'locked' } }, 'the 4th while locked: not checked, not charged')
    t.ok(locked.ipBlockedMs > 59_000, 'the IP\'s 4th failure spends its budget')
    t.ok((await s.check(u, ip)).ipBlockedMs > 59_000)
    const open = await make({ ...POLICY, ip: null })
    t.same(await open.failAttempt(ref(), ip, 0), { user: { ok: false, reason: 'failed', failures: 1, lockedForMs: 0 }, ipBlockedMs: 0 }, 'no IP budget when off')
    t.equal((await open.check(u, ip)).ipBlockedMs, 0)
  })

  t.test(`${name}: R4/S4 a wrong code checked under another generation (revoked or replaced since) charges nobody, neither user nor IP`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    const ip = `10.4.${n++ % 250}.${process.pid % 250}`
    await s.startSetup(u, 'x', 60_000)
    await s.confirmSetup(u, 'x', 10)
    t.same(await s.failAttempt(u, ip, 0), { user: { ok: false, reason: 'changed' }, ipBlockedMs: 0 }, 'checked before the confirmation')
    t.same(await s.fail(u, 2), { ok: false, reason: 'changed' })
    for (let i = 0; i < 3; i++) t.equal(await s.failIp(ip), 0, 'the IP was not charged: three more fit its budget')
    const charged = await s.failAttempt(u, ip, 1)
    t.same(charged.user, { ok: false, reason: 'failed', failures: 1, lockedForMs: 0 }, 'under its own generation: charged, the user\'s first')
    t.ok(charged.ipBlockedMs > 59_000, 'and the IP\'s fourth, which spends its budget')
    t.same(await s.fail(u), { ok: false, reason: 'failed', failures: 2, lockedForMs: 0 }, 'without a generation: charged')
  })

  t.test(`${name}: S4 an IP over its budget: consume and confirmSetup with it refuse undecided, failAttempt charges no one`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    const other = ref()
    const ip = `10.3.${n++ % 250}.${process.pid % 250}`
    await s.startSetup(u, 'sealed-u', 60_000)
    await s.confirmSetup(u, 'sealed-u', 7)
    t.same(await s.consume(u, 8, 1, ip), { ok: true, gen: 1 }, 'within its budget the IP changes nothing')
    for (let i = 0; i < 4; i++) await s.failIp(ip)
    const refused = await s.consume(u, 9, 1, ip)
    t.match(refused, { ok: false, reason: 'ip-locked' })
    t.ok(refused.ok === false && refused.reason === 'ip-locked' && refused.retryAfterMs > 59_000, 'with the time left')
    t.equal((await s.load(u)).lastStep, 8, 'the step was not consumed')
    t.same(await s.consume(u, 9, 1), { ok: true, gen: 1 }, 'without the IP (its budget read by the caller) it consumes')
    await s.startSetup(other, 'sealed-o', 60_000)
    t.match(await s.confirmSetup(other, 'sealed-o', 7, ip), { ok: false, reason: 'ip-locked' }, 'a confirmation is refused too')
    t.match(await s.load(other), { sealed: null, pending: 'sealed-o', lastStep: -1 }, 'nothing confirmed')
    t.same(await s.confirmSetup(other, 'sealed-o', 7), { ok: true, gen: 1 }, 'without the IP it confirms')
    const third = ref()
    const charged = await s.failAttempt(third, ip, 0)
    t.match(charged, { user: { ok: false, reason: 'ip-locked' }, ipBlockedMs: 0 })
    t.same(await s.load(third), { sealed: null, pending: null, lastStep: -1, lockedForMs: 0, gen: 0 }, 'the user was not charged')
    const open = await make({ ...POLICY, ip: null })
    const v = ref()
    await open.startSetup(v, 'sealed-v', 60_000)
    await open.confirmSetup(v, 'sealed-v', 7)
    t.same(await open.consume(v, 8, 1, ip), { ok: true, gen: 1 }, 'no IP budget when off')
  })

  t.test(`${name}: R4 revoke deletes secret, pending setup, replay and lock state at once and bumps the generation`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, 'x', 60_000)
    await s.confirmSetup(u, 'x', 10)
    for (let i = 0; i < 3; i++) await s.fail(u)
    await s.setEnforced(u, true)
    t.equal(await s.revoke(u), true)
    t.same(await s.gate(u), { enabled: false, enforced: true, enforceAll: false, gen: 2, lockedUntil: 0 })
    t.same(await s.load(u), { sealed: null, pending: null, lastStep: -1, lockedForMs: 0, gen: 2 })
    t.equal(await s.revoke(u), false, 'nothing left')
    await s.startSetup(u, 'y', 60_000)
    t.equal(await s.revoke(u), true, 'a pending setup counts')
    t.equal((await s.load(u)).pending, null)
  })

  t.test(`${name}: R5/R7 enforcement per user and per tenant`, async (t) => {
    const s = await make(POLICY)
    const tenant = `tenant-${n++}-${process.pid}`
    const u = ref(tenant)
    const other = ref(`${tenant}-other`)
    await s.setEnforced(u, true)
    t.match(await s.gate(u), { enforced: true, enforceAll: false })
    await s.setEnforced(u, false)
    t.match(await s.gate(u), { enforced: false })
    await s.setSettings(tenant, { enforceAll: true })
    t.same(await s.getSettings(tenant), { enforceAll: true })
    for (let i = 0; i < 20; i++) t.match(await s.gate(ref(tenant)), { enforceAll: true }, 'every user of the tenant')
    t.match(await s.gate(other), { enforceAll: false }, 'another tenant untouched')
    await s.setSettings(tenant, { enforceAll: false })
    t.same(await s.getSettings(tenant), { enforceAll: false })
    t.match(await s.gate(u), { enforceAll: false })
  })

  t.test(`${name}: tenants and users are isolated, whatever their ids contain`, async (t) => {
    const s = await make(POLICY)
    const a = { tenant: 'a:b', userId: `c}{${n++}` }
    const b = { tenant: 'a', userId: `b:c}{${n - 1}` }
    await s.startSetup(a, 'sa', 60_000)
    await s.confirmSetup(a, 'sa', 1)
    t.match(await s.gate(b), { enabled: false })
    t.match(await s.gate(a), { enabled: true })
  })
}
