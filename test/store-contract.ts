import type { Test } from 'tap'
import type { TotpStore } from '../plugin/stores/store.js'
import { DEFAULT_LOCKOUT } from '../plugin/options.js'
import { LOCKED_UNTIL_UNLOCK, type AttemptResult, type StorePolicy, type UserRef } from '../plugin/types.js'

export const POLICY: StorePolicy = {
  lock: { freeFailures: 3, lockMs: 150, maxLockMs: 500, maxFailures: 100 },
  ip: { maxFailures: 4, windowMs: 60_000 }
}
export const DEFAULT_POLICY: StorePolicy = {
  lock: {
    freeFailures: DEFAULT_LOCKOUT.freeFailures,
    lockMs: DEFAULT_LOCKOUT.lockSeconds * 1000,
    maxLockMs: DEFAULT_LOCKOUT.maxLockSeconds * 1000,
    maxFailures: DEFAULT_LOCKOUT.maxFailures
  },
  ip: null
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0
const ref = (tenant = 'default'): UserRef => ({ tenant, userId: `user-${process.pid}-${Date.now()}-${n++}` })
const newIp = (block: number): string => `10.${block}.${n++ % 250}.${process.pid % 250}`

// The deciding calls the routes make, by name.
const confirm = (
  s: TotpStore, u: UserRef, pending: string, step: number | null, gen = 0, ip: string | null = null
): Promise<AttemptResult> => s.attempt(u, { kind: 'confirm', gen, step, pending, ip })
const verify = (
  s: TotpStore, u: UserRef, step: number | null, gen: number, ip: string | null = null
): Promise<AttemptResult> => s.attempt(u, { kind: 'verify', gen, step, ip })
/** A wrong code for an enrolled user of generation `gen`. */
const wrong = (s: TotpStore, u: UserRef, gen: number, ip: string | null = null): Promise<AttemptResult> =>
  verify(s, u, null, gen, ip)
const recover = (s: TotpStore, u: UserRef, recovery: string[], gen = 1, ip: string | null = null) =>
  s.attempt(u, { kind: 'recover', gen, step: null, ip, recovery })
const failed = (failures: number, lockedForMs: number | null = 0, ipLockedForMs = 0): AttemptResult =>
  ({ ok: false, reason: 'failed', failures, lockedForMs, ipLockedForMs })

/** The store contract: every implementation (memory, Redis, Redis Cluster) must pass it. */
export function storeContract (t: Test, name: string, make: (policy: StorePolicy) => Promise<TotpStore>): void {
  const enrolled = async (s: TotpStore, step = 10, recovery?: string[]): Promise<UserRef> => {
    const u = ref()
    await s.startSetup(u, { sealed: 'k1.x', qr: '', ttlMs: 60_000 })
    await s.attempt(u, { kind: 'confirm', gen: 0, step, pending: 'k1.x', ip: null, recovery })
    return u
  }

  t.test(`${name}: R9 recovery codes are stored with the confirmation, used once each, replaced as a set`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, { sealed: 'k1.x', qr: '', ttlMs: 60_000 })
    t.same(await s.attempt(u, { kind: 'confirm', gen: 0, step: 10, pending: 'k1.x', ip: null, recovery: ['k1:a', 'k1:b', 'k1:c'] }),
      { ok: true, gen: 1, recoveryCodesLeft: 3 })
    t.equal(await s.recoveryCodesLeft(u), 3)
    t.same(await recover(s, u, ['k1:zz']), failed(1), 'a wrong code is a failure on the user\'s counter (S4)')
    t.same(await recover(s, u, ['k9:b', 'k1:b']), { ok: true, gen: 1, recoveryCodesLeft: 2 }, 'any of the candidates')
    t.same(await recover(s, u, ['k1:b']), failed(1), 'used once; the success had reset the count')
    t.equal((await s.check(u)).secret.sealed, 'k1.x', 'R2 the secret stays')
    t.same(await verify(s, u, 11, 1), { ok: true, gen: 1, recoveryCodesLeft: 2 }, 'and its codes still verify')
    t.same(await recover(s, u, ['k1:a'], 0), { ok: false, reason: 'changed' }, 'under another generation: nothing used')
    t.equal(await s.recoveryCodesLeft(u), 2)
    t.same(await s.setRecoveryCodes(u, 1, ['k1:n', 'k1:m']), { ok: true, count: 2 })
    t.same(await recover(s, u, ['k1:a']), failed(1), 'the old set is gone')
    t.same(await s.setRecoveryCodes(u, 0, ['k1:o']), { ok: false, reason: 'changed' })
    t.same(await s.setRecoveryCodes(ref(), 0, ['k1:o']), { ok: false, reason: 'not-enabled' })
    t.same(await recover(s, ref(), ['k1:o'], 0), { ok: false, reason: 'not-enabled' })
    t.equal(await s.revoke(u), true)
    t.equal(await s.recoveryCodesLeft(u), 0, 'R4 revocation deletes the codes with the secret')
    t.same(await recover(s, u, ['k1:n'], 2), { ok: false, reason: 'not-enabled' })
  })

  t.test(`${name}: R9 of 20 parallel uses of one recovery code exactly one succeeds`, async (t) => {
    const s = await make({ ...POLICY, lock: { ...POLICY.lock, freeFailures: 100 } })
    const u = await enrolled(s, 10, ['k1:one', 'k1:two'])
    const results = await Promise.all(Array.from({ length: 20 }, () => recover(s, u, ['k1:one'])))
    t.equal(results.filter((r) => r.ok).length, 1)
    t.equal(results.filter((r) => !r.ok && r.reason === 'failed').length, 19, 'the others are failures')
    t.equal(await s.recoveryCodesLeft(u), 1)
  })

  t.test(`${name}: R10 after maxFailures in a row the lock lasts until unlocked, whatever the code; unlock and revocation end it`, async (t) => {
    const s = await make({ ...POLICY, lock: { freeFailures: 2, lockMs: 1, maxLockMs: 1, maxFailures: 4 } })
    const u = await enrolled(s, 10, ['k1:r'])
    const results = []
    for (let i = 0; i < 4; i++) {
      results.push(await wrong(s, u, 1))
      await sleep(5)
    }
    t.same(results, [failed(1), failed(2, 1), failed(3, 1), failed(4, null)])
    t.equal((await s.gate(u)).lockedUntil, LOCKED_UNTIL_UNLOCK)
    await sleep(20)
    t.same(await verify(s, u, 11, 1), { ok: false, reason: 'locked', retryAfterMs: null }, 'a right code is refused')
    t.same(await recover(s, u, ['k1:r']), { ok: false, reason: 'locked', retryAfterMs: null }, 'a right recovery code too')
    t.equal(await s.recoveryCodesLeft(u), 1, 'and not used')
    t.equal(await s.unlock(u), true)
    t.equal((await s.gate(u)).lockedUntil, 0)
    t.same(await wrong(s, u, 1), failed(1), 'the count starts again')
    t.same(await verify(s, u, 11, 1), { ok: true, gen: 1, recoveryCodesLeft: 1 })
    t.equal(await s.unlock(u), false, 'nothing to unlock')
    for (let i = 0; i < 4; i++) {
      await wrong(s, u, 1)
      await sleep(5)
    }
    t.equal((await s.gate(u)).lockedUntil, LOCKED_UNTIL_UNLOCK)
    await s.revoke(u)
    t.equal((await s.gate(u)).lockedUntil, 0, 'revocation ends the lock')
  })

  t.test(`${name}: R1 setup is pending until confirmed; confirming activates and counts the step as used (S3)`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    t.same(await s.gate(u), { enabled: false, enforced: false, enforceAll: false, gen: 0, lockedUntil: 0, roleEnforced: false, setupDeadline: 0, device: '' })
    t.match(await s.startSetup(u, { sealed: 'k1.sealed-1', qr: 'qr-1', ttlMs: 60_000 }), { status: 'started' })
    t.same((await s.check(u)).secret, { sealed: null, pending: 'k1.sealed-1', lastStep: -1 })
    t.match(await s.startSetup(u, { sealed: 'k1.sealed-2', qr: 'qr-2', ttlMs: 60_000 }),
      { status: 'pending', sealed: 'k1.sealed-1', qr: 'qr-1' }, 'S7 a pending setup is answered again, not replaced')
    t.match(await s.startSetup(u, null), { status: 'pending', sealed: 'k1.sealed-1' }, 'a look answers it too')
    t.same(await confirm(s, u, 'k1.sealed-2', 100), { ok: false, reason: 'no-pending' }, 'a secret never stored is refused')
    t.same(await confirm(s, u, 'k1.sealed-1', 100), { ok: true, gen: 1, recoveryCodesLeft: 0 })
    t.same((await s.check(u)).secret, { sealed: 'k1.sealed-1', pending: null, lastStep: 100 })
    t.match(await s.gate(u), { enabled: true, gen: 1 })
    t.same(await s.startSetup(u, { sealed: 'k1.sealed-3', qr: '', ttlMs: 60_000 }), { status: 'already-enabled' }, 'R2')
    t.same(await confirm(s, u, 'k1.sealed-1', 101, 1), { ok: false, reason: 'already-enabled' })
    t.match(await verify(s, u, 100, 1), { ok: false, reason: 'failed' }, 'the confirming step is used')
    const plain = ref()
    await s.startSetup(plain, { sealed: 'no-key-id', qr: '', ttlMs: 60_000 })
    t.same(await confirm(s, plain, 'no-key-id', 5), { ok: true, gen: 1, recoveryCodesLeft: 0 }, 'a sealed value without a key id is kept whole')
    t.equal((await s.check(plain)).secret.sealed, 'no-key-id')
  })

  t.test(`${name}: S7 new setups are capped per user and window; a look costs no start`, async (t) => {
    const s = await make({ ...POLICY, setup: { maxStarts: 2, windowMs: 60_000 } })
    const u = ref()
    t.same(await s.startSetup(u, null), { status: 'none' })
    t.match(await s.startSetup(u, { sealed: 'k1.a', qr: '', ttlMs: 60_000 }), { status: 'started' })
    await s.revoke(u)
    t.same(await s.startSetup(u, null), { status: 'none' }, 'looking does not count')
    t.match(await s.startSetup(u, { sealed: 'k1.b', qr: '', ttlMs: 60_000 }), { status: 'started' })
    await s.revoke(u)
    const r = await s.startSetup(u, { sealed: 'k1.c', qr: '', ttlMs: 60_000 })
    t.equal(r.status, 'throttled', 'the third start in the window is refused')
    t.ok(r.status === 'throttled' && r.retryAfterMs > 0 && r.retryAfterMs <= 60_000)
    t.equal((await s.check(u)).secret.pending, null, 'nothing was stored')
    t.equal((await s.startSetup(ref(), null)).status, 'none', 'per user')
  })

  t.test(`${name}: R1 a pending setup expires`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, { sealed: 'k1.p', qr: '', ttlMs: 100 })
    await sleep(150)
    t.equal((await s.check(u)).secret.pending, null)
    t.same(await confirm(s, u, 'k1.p', 5), { ok: false, reason: 'no-pending' })
  })

  t.test(`${name}: R1 a wrong confirming code is charged like a wrong verification`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, { sealed: 'k1.p', qr: '', ttlMs: 60_000 })
    t.same(await confirm(s, u, 'k1.p', null), failed(1))
    t.same((await s.check(u)).secret, { sealed: null, pending: 'k1.p', lastStep: -1 }, 'still pending')
  })

  t.test(`${name}: S3 the last accepted step only grows; of N racing consumes of one step exactly one wins`, async (t) => {
    // the 19 losers are charged as reused codes: allow them without a lock here
    const s = await make({ ...POLICY, lock: { ...POLICY.lock, freeFailures: 100 } })
    const u = await enrolled(s)
    const results = await Promise.all(Array.from({ length: 20 }, () => verify(s, u, 11, 1)))
    t.equal(results.filter((r) => r.ok).length, 1)
    t.match(await verify(s, u, 12, 1), { ok: true })
    t.match(await verify(s, u, 11, 1), { ok: false, reason: 'failed' }, 'older step refused')
    t.equal((await s.check(u)).secret.lastStep, 12)
    t.same(await verify(s, ref(), 1, 0), { ok: false, reason: 'not-enabled' })
  })

  t.test(`${name}: S3 a step is consumed once, whoever asks again; R4 a code checked under another generation (revoked or replaced since) consumes and charges nothing`, async (t) => {
    const s = await make(POLICY)
    const u = ref()
    await s.startSetup(u, { sealed: 'k1.x', qr: '', ttlMs: 60_000 })
    t.same(await confirm(s, u, 'k1.x', 10), { ok: true, gen: 1, recoveryCodesLeft: 0 })
    t.same(await verify(s, u, 10, 1), failed(1), 'the confirming step, asked again: a replay')
    t.same(await verify(s, u, 11, 1), { ok: true, gen: 1, recoveryCodesLeft: 0 })
    t.same(await verify(s, u, 11, 1), failed(1), 'a consumed step, asked again: a replay')
    t.same(await verify(s, u, 12, 0), { ok: false, reason: 'changed' }, 'checked under an older generation')
    t.same(await verify(s, u, 12, 2), { ok: false, reason: 'changed' }, 'or any other')
    t.same(await wrong(s, u, 2), { ok: false, reason: 'changed' }, 'a wrong code under another generation charges nobody')
    t.equal((await s.check(u)).secret.lastStep, 11, 'nothing consumed')
    t.same(await wrong(s, u, 1), failed(2), 'nothing charged')
    await s.revoke(u)
    t.same(await verify(s, u, 12, 2), { ok: false, reason: 'not-enabled' }, 'revoked since')
    await s.startSetup(u, { sealed: 'k1.y', qr: '', ttlMs: 60_000 })
    t.same(await confirm(s, u, 'k1.y', 12, 2), { ok: true, gen: 3, recoveryCodesLeft: 0 })
    t.same(await verify(s, u, 13, 1), { ok: false, reason: 'changed' }, 'replaced since: a code checked against the old secret')
    t.same(await verify(s, u, 13, 3), { ok: true, gen: 3, recoveryCodesLeft: 0 }, 'checked against the secret there now')
  })

  t.test(`${name}: S4 failures lock from the free-th on, doubling, capped; locked attempts are not charged; success resets`, async (t) => {
    const s = await make(POLICY)
    const u = await enrolled(s)
    t.same(await wrong(s, u, 1), failed(1))
    t.same(await wrong(s, u, 1), failed(2))
    t.same(await wrong(s, u, 1), failed(3, 150))
    const locked = await wrong(s, u, 1)
    t.match(locked, { ok: false, reason: 'locked' })
    t.ok((locked as any).retryAfterMs > 0 && (locked as any).retryAfterMs <= 150)
    t.match(await verify(s, u, 11, 1), { ok: false, reason: 'locked' }, 'a right code is not consumed while locked')
    t.ok((await s.gate(u)).lockedUntil > Date.now())
    await sleep(160)
    t.same(await wrong(s, u, 1), failed(4, 300), 'doubles')
    await sleep(310)
    t.same(await wrong(s, u, 1), failed(5, 500), 'capped')
    await sleep(510)
    t.same(await wrong(s, u, 1), failed(6, 500))
    await sleep(510)
    t.same(await verify(s, u, 11, 1), { ok: true, gen: 1, recoveryCodesLeft: 0 })
    t.same(await wrong(s, u, 1), failed(1), 'reset by the success')
  })

  t.test(`${name}: S4 default policy: 5 free failures, then 30 s; no IP budget when off`, async (t) => {
    const s = await make(DEFAULT_POLICY)
    const u = await enrolled(s)
    const r = []
    for (let i = 0; i < 5; i++) r.push(await wrong(s, u, 1, '1.2.3.4'))
    t.same(r.map((x: any) => [x.lockedForMs, x.ipLockedForMs]), [[0, 0], [0, 0], [0, 0], [0, 0], [30_000, 0]])
    t.match(await wrong(s, u, 1), { reason: 'locked' })
  })

  t.test(`${name}: S4 a wrong code charges user and IP at once; the IP's budget spans users`, async (t) => {
    const s = await make({ ...POLICY, lock: { ...POLICY.lock, freeFailures: 100 } })
    const ip = newIp(2)
    const users = [await enrolled(s), await enrolled(s)]
    t.same(await wrong(s, users[0], 1, ip), failed(1))
    t.same(await wrong(s, users[1], 1, ip), failed(1))
    t.same(await wrong(s, users[0], 1, ip), failed(2))
    const spent = await wrong(s, users[1], 1, ip)
    t.match(spent, { ok: false, reason: 'failed', failures: 2, lockedForMs: 0 })
    t.ok(spent.ok === false && spent.reason === 'failed' && spent.ipLockedForMs > 59_000, 'the IP\'s 4th failure spends its budget')
    const refused = await verify(s, users[0], 11, 1, ip)
    t.ok(refused.ok === false && refused.reason === 'ip-locked' && refused.retryAfterMs > 59_000, 'then a right code is refused, with the time left')
    t.equal((await s.check(users[0])).secret.lastStep, 10, 'the step was not consumed')
    t.match(await wrong(s, users[0], 1, ip), { ok: false, reason: 'ip-locked' }, 'a wrong code too')
    t.same(await wrong(s, users[0], 1), failed(3), 'the user was not charged while the IP was refused')
    t.same(await verify(s, users[0], 11, 1), { ok: true, gen: 1, recoveryCodesLeft: 0 }, 'without the IP it consumes')
    const other = ref()
    await s.startSetup(other, { sealed: 'k1.o', qr: '', ttlMs: 60_000 })
    t.match(await confirm(s, other, 'k1.o', 7, 0, ip), { ok: false, reason: 'ip-locked' }, 'a confirmation is refused too')
    t.same((await s.check(other)).secret, { sealed: null, pending: 'k1.o', lastStep: -1 }, 'nothing confirmed')
    t.same(await confirm(s, other, 'k1.o', 7, 0, newIp(2)), { ok: true, gen: 1, recoveryCodesLeft: 0 }, 'from another IP it confirms')
  })

  t.test(`${name}: S4 a locked user's attempt charges nobody, neither user nor IP, whatever the code`, async (t) => {
    const s = await make(POLICY)
    const u = await enrolled(s)
    const ip = newIp(5)
    for (let i = 0; i < 3; i++) await wrong(s, u, 1)
    for (let i = 0; i < 10; i++) {
      t.match(await wrong(s, u, 1, ip), { ok: false, reason: 'locked' })
      t.match(await verify(s, u, 11, 1, ip), { ok: false, reason: 'locked' })
    }
    const v = await enrolled(s)
    t.same(await wrong(s, v, 1, ip), failed(1), 'the IP kept its whole budget: another user\'s failure is its first')
    for (let i = 0; i < 2; i++) t.same(await wrong(s, v, 1, ip), failed(i + 2, i === 1 ? 150 : 0))
    const fourth = await wrong(s, await enrolled(s), 1, ip)
    t.ok(fourth.ok === false && fourth.reason === 'failed' && fourth.ipLockedForMs > 59_000, 'its fourth failure spends it')
  })

  t.test(`${name}: R4 revoke deletes secret, pending setup, replay and lock state at once and bumps the generation`, async (t) => {
    const s = await make(POLICY)
    const u = await enrolled(s)
    for (let i = 0; i < 3; i++) await wrong(s, u, 1)
    await s.setEnforced(u, true)
    t.equal(await s.revoke(u), true)
    t.same(await s.gate(u), { enabled: false, enforced: true, enforceAll: false, gen: 2, lockedUntil: 0, roleEnforced: false, setupDeadline: 0, device: '' })
    t.same((await s.check(u)).secret, { sealed: null, pending: null, lastStep: -1 })
    t.equal(await s.revoke(u), false, 'nothing left')
    await s.startSetup(u, { sealed: 'k1.y', qr: '', ttlMs: 60_000 })
    t.equal(await s.revoke(u), true, 'a pending setup counts')
    t.equal((await s.check(u)).secret.pending, null)
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
    await s.setSettings(tenant, { enforceAll: true, enforceRoles: [], gracePeriod: 0 })
    t.same(await s.getSettings(tenant), { enforceAll: true, enforceRoles: [], gracePeriod: 0 })
    for (let i = 0; i < 20; i++) t.match(await s.gate(ref(tenant)), { enforceAll: true }, 'every user of the tenant')
    t.match((await s.check(ref(tenant))).gate, { enforceAll: true }, 'the code routes\' read too')
    t.match(await s.gate(other), { enforceAll: false }, 'another tenant untouched')
    await s.setSettings(tenant, { enforceAll: false, enforceRoles: [], gracePeriod: 0 })
    t.same(await s.getSettings(tenant), { enforceAll: false, enforceRoles: [], gracePeriod: 0 })
    t.match(await s.gate(u), { enforceAll: false })
  })

  t.test(`${name}: R13 a role in the tenant's enforceRoles enforces its holders, in the gate's one read`, async (t) => {
    const s = await make(POLICY)
    const tenant = `tenant-${n++}-${process.pid}`
    const u = ref(tenant)
    await s.setSettings(tenant, { enforceAll: false, enforceRoles: ['ROLE_X', 'ROLE Y'], gracePeriod: 0 })
    t.same(await s.getSettings(tenant), { enforceAll: false, enforceRoles: ['ROLE_X', 'ROLE Y'], gracePeriod: 0 })
    const gate = (roles: string[]) => s.gate(u, { roles, device: null, mode: 'gate' })
    t.match(await gate(['ROLE_A', 'ROLE Y']), { roleEnforced: true, enforced: false, enforceAll: false })
    t.match(await gate(['ROLE_X']), { roleEnforced: true })
    t.match(await gate(['ROLE']), { roleEnforced: false }, 'a prefix of a role is not the role')
    t.match(await gate(['ROLE_X\nROLE_A']), { roleEnforced: false }, 'a role with a newline matches nothing')
    t.match(await gate([]), { roleEnforced: false })
    t.match(await s.gate(ref(`${tenant}-other`), { roles: ['ROLE_X'], device: null, mode: 'gate' }), { roleEnforced: false }, 'per tenant')
    t.match((await s.check(u, { roles: ['ROLE_X'], device: null, mode: 'gate' })).gate, { roleEnforced: true }, 'the code routes\' read too')
    await s.setSettings(tenant, { enforceAll: false, enforceRoles: [], gracePeriod: 0 })
    t.match(await gate(['ROLE_X']), { roleEnforced: false })
  })

  t.test(`${name}: R14 a grace period's deadline starts at the first request seen enforced; a look or a confirmation do not start it`, async (t) => {
    const s = await make(POLICY)
    const tenant = `tenant-${n++}-${process.pid}`
    await s.setSettings(tenant, { enforceAll: true, enforceRoles: [], gracePeriod: 60 })
    const u = ref(tenant)
    t.equal((await s.gate(u)).setupDeadline, 0, 'a look starts nothing')
    t.equal((await s.check(u)).gate.setupDeadline, 0, 'nor a code check\'s read without a request')
    t.equal((await s.gate(u)).setupDeadline, 0)
    const before = Date.now()
    const first = (await s.gate(u, { roles: [], device: null, mode: 'gate' })).setupDeadline
    t.ok(first >= before + 59_000 && first <= Date.now() + 60_000, 'now + 60 s')
    await sleep(5)
    t.equal((await s.gate(u, { roles: [], device: null, mode: 'gate' })).setupDeadline, first, 'counted from the first request')
    await s.startSetup(u, { sealed: 'k1.g', qr: '', ttlMs: 60_000 })
    await confirm(s, u, 'k1.g', 5)
    t.equal((await s.gate(u, { roles: [], device: null, mode: 'gate' })).setupDeadline, 0, 'enrolled: no deadline')
    const v = ref(tenant)
    await s.setSettings(tenant, { enforceAll: false, enforceRoles: [], gracePeriod: 60 })
    t.equal((await s.gate(v, { roles: [], device: null, mode: 'gate' })).setupDeadline, 0, 'not enforced: none')
    await s.setEnforced(v, true)
    t.ok((await s.gate(v, { roles: [], device: null, mode: 'gate' })).setupDeadline > 0, 'enforced per user: one')
    await s.setEnforced(v, false)
    t.equal((await s.gate(v)).setupDeadline, 0, 'un-enforcing drops it')
  })

  t.test(`${name}: R15 trusted devices are read in the gate's one command, per user; listed, forgotten, and revoked with the secret`, async (t) => {
    const s = await make(POLICY)
    const u = await enrolled(s)
    const other = await enrolled(s)
    await s.trustDevice(u, 'dev-aaaaaaaa', '{"r":1}', 60_000)
    await s.trustDevice(u, 'dev-bbbbbbbb', '{"r":2}', 60_000)
    const q = (device: string | null) => ({ roles: [], device, mode: 'gate' as const })
    t.equal((await s.gate(u, q('dev-aaaaaaaa'))).device, '{"r":1}')
    t.equal((await s.check(u, q('dev-bbbbbbbb'))).gate.device, '{"r":2}')
    t.equal((await s.gate(u, q(null))).device, '')
    t.equal((await s.gate(u, q('dev-cccccccc'))).device, '', 'unknown')
    t.equal((await s.gate(other, q('dev-aaaaaaaa'))).device, '', 'another user\'s device is not this one\'s')
    t.same(await s.listDevices(u), { 'dev-aaaaaaaa': '{"r":1}', 'dev-bbbbbbbb': '{"r":2}' })
    t.equal(await s.forgetDevice(u, 'dev-aaaaaaaa'), true)
    t.equal(await s.forgetDevice(u, 'dev-aaaaaaaa'), false)
    t.equal((await s.gate(u, q('dev-aaaaaaaa'))).device, '')
    await s.revoke(u)
    t.same(await s.listDevices(u), {}, 'R4 revocation drops every device')
    await s.trustDevice(other, 'dev-short000', '{}', 50)
    await sleep(80)
    t.same(await s.listDevices(other), {}, 'the set expires')
  })

  t.test(`${name}: statuses: many users' looks in one call, in order, each with its roles`, async (t) => {
    const s = await make(POLICY)
    const tenant = `tenant-${n++}-${process.pid}`
    await s.setSettings(tenant, { enforceAll: false, enforceRoles: ['ROLE_X'], gracePeriod: 0 })
    const users = Array.from({ length: 30 }, () => ref(tenant))
    await s.setEnforced(users[3], true)
    const r = await s.looks(users.map((u, i) => ({ ref: u, roles: i % 2 === 0 ? ['ROLE_X'] : [] })))
    t.equal(r.length, 30)
    t.ok(r.every((x, i) => x.state.roleEnforced === (i % 2 === 0)))
    t.ok(r.every((x, i) => x.state.enforced === (i === 3)))
    t.ok(r.every((x) => x.recoveryCodesLeft === 0 && x.state.setupDeadline === 0))
    t.same(await s.looks([]), [])
  })

  t.test(`${name}: tenants and users are isolated, whatever their ids contain`, async (t) => {
    const s = await make(POLICY)
    const a = { tenant: 'a:b', userId: `c}{${n++}` }
    const b = { tenant: 'a', userId: `b:c}{${n - 1}` }
    await s.startSetup(a, { sealed: 'k1.sa', qr: '', ttlMs: 60_000 })
    await confirm(s, a, 'k1.sa', 1)
    t.match(await s.gate(b), { enabled: false })
    t.match(await s.gate(a), { enabled: true })
  })
}
