// Soak: a bounded run of mixed traffic against one instance over real HTTP, on a private
// Redis, sampling memory as it goes; then whether the heap levelled off.
//   node --expose-gc --import tsx scripts/soak.ts
// SOAK_SECONDS (default 180), SOAK_CONCURRENCY (16), SOAK_SAMPLE_SECONDS (5).
// Exit code 1 when a request got a 5xx or an unexpected answer, or when the heap kept growing.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import type { TotpUser } from '../plugin/index.js'
import { build, codeFor, currentStep, USERS } from '../test/helpers.js'
import { startRedis } from '../test/support/redis-servers.js'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180)
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 16)
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_SECONDS ?? 5) * 1000
const ENROLLED = 200
const FRESH = 100
const gc = (globalThis as { gc?: () => void }).gc

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]

// ---- the app: one instance, sessions and TOTP state in a private Redis ----
const server = await startRedis()
const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
const cleanups: Array<() => unknown> = []
const t = { teardown: (fn: () => unknown) => { cleanups.push(fn) } } as unknown as Test
const members: TotpUser[] = Array.from({ length: ENROLLED + FRESH }, (_, i) =>
  ({ id: `member-${i}`, parentId: 'admin', roles: [] }))
let events = 0
const { app } = await build(t, {
  redis,
  users: [...USERS, ...members],
  // all traffic comes from 127.0.0.1: no per-IP budget; short locks so locked users come back
  plugin: {
    ipLimit: false,
    lockout: { freeFailures: 5, lockSeconds: 1, maxLockSeconds: 2 },
    onEvent: () => { events++ }
  }
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as AddressInfo
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })

interface Answer { status: number, body: any, cookie?: string }
let httpRequests = 0
function request (method: string, path: string, cookie?: string, payload?: unknown): Promise<Answer> {
  httpRequests++
  return new Promise((resolve, reject) => {
    const body = payload === undefined ? undefined : JSON.stringify(payload)
    const req = http.request({
      host: '127.0.0.1',
      port,
      method,
      path,
      agent,
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {})
      }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let json: any = null
        try { json = text ? JSON.parse(text) : null } catch {}
        const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('sessionId='))
        resolve({ status: res.statusCode ?? 0, body: json, cookie: set?.split(';')[0] })
      })
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

class Session {
  cookie: string | undefined
  async send (method: string, path: string, payload?: unknown): Promise<Answer> {
    const a = await request(method, path, this.cookie, payload)
    if (a.cookie) this.cookie = a.cookie
    return a
  }

  async login (user: string): Promise<void> { await this.send('POST', '/login', { username: user }) }
  async logout (): Promise<void> { await this.send('POST', '/logout') }
}

// ---- fixtures: enrolled members with their secrets, verified sessions for gate and admin traffic ----
const secrets = new Map<string, string>()
const lastStep = new Map<string, number>()
async function enrolOver (user: string): Promise<Session> {
  const s = new Session()
  await s.login(user)
  const setup = await s.send('POST', '/totp/setup')
  if (setup.status !== 201) throw new Error(`setup ${user}: ${setup.status}`)
  const step = currentStep()
  const confirm = await s.send('POST', '/totp/setup/confirm', { code: codeFor(setup.body.secret, 0, step * 30) })
  if (confirm.status !== 200) throw new Error(`confirm ${user}: ${confirm.status}`)
  secrets.set(user, setup.body.secret)
  lastStep.set(user, step)
  return s
}
const enrolled = members.slice(0, ENROLLED).map((m) => m.id)
const fresh = members.slice(ENROLLED).map((m) => m.id)
const verified: Session[] = []
for (let i = 0; i < enrolled.length; i += 20) {
  const batch = await Promise.all(enrolled.slice(i, i + 20).map(enrolOver))
  verified.push(...batch.slice(0, 2))
}
const admin = await enrolOver('admin')
const busy = new Set<string>()

/** A right code for `user` not used yet (current or next step), or null. */
function freshCode (user: string): string | null {
  const step = currentStep()
  const last = lastStep.get(user) ?? -1
  const offset = last < step ? 0 : last < step + 1 ? 1 : null
  if (offset === null) return null
  lastStep.set(user, step + offset)
  return codeFor(secrets.get(user)!, offset, step * 30)
}

// ---- the traffic mix ----
const tally = new Map<string, number>()
const unexpected: string[] = []
function expect (action: string, a: Answer, ok: number[]): void {
  const key = `${action} ${a.status}`
  tally.set(key, (tally.get(key) ?? 0) + 1)
  if (!ok.includes(a.status) && unexpected.length < 50) unexpected.push(`${key} ${JSON.stringify(a.body)}`)
}

const ACTIONS: Array<[number, string, () => Promise<void>]> = [
  [30, 'gate (verified)', async () => {
    expect('gate (verified)', await pick(verified).send('GET', '/api/profile'), [200])
  }],
  [10, 'status', async () => { expect('status', await pick(verified).send('GET', '/totp/status'), [200]) }],
  [10, 'sign-in + right code', async () => {
    const user = pick(enrolled)
    const code = freshCode(user)
    if (code === null) return
    const s = new Session()
    await s.login(user)
    expect('sign-in + right code', await s.send('POST', '/totp/verify', { code }), [200, 401, 429])
    expect('verified page', await s.send('GET', '/api/profile'), [200, 401])
    await s.logout()
  }],
  [10, 'sign-in + wrong code', async () => {
    const s = new Session()
    await s.login(pick(enrolled))
    expect('sign-in + wrong code', await s.send('POST', '/totp/verify', { code: '000000' }), [401, 429])
    await s.logout()
  }],
  [10, 'sign-in, gated', async () => {
    const s = new Session()
    await s.login(pick(enrolled))
    expect('sign-in, gated', await s.send('GET', '/api/profile'), [401])
    expect('malformed code', await s.send('POST', '/totp/verify', { code: '12345x' }), [400])
    await s.logout()
  }],
  [8, 'setup + confirm + revoke', async () => {
    const user = fresh.find((u) => !busy.has(u))
    if (user === undefined) return
    busy.add(user)
    try {
      const s = new Session()
      await s.login(user)
      const setup = await s.send('POST', '/totp/setup')
      expect('setup', setup, [201])
      if (setup.status === 201) {
        expect('confirm', await s.send('POST', '/totp/setup/confirm', { code: codeFor(setup.body.secret) }), [200])
      }
      await app.totp.revoke(user)
      await s.logout()
    } finally {
      busy.delete(user)
    }
  }],
  [12, 'admin reads', async () => {
    expect('admin read user', await admin.send('GET', `/totp/users/${pick(enrolled)}`), [200])
    expect('admin read settings', await admin.send('GET', '/totp/settings'), [200])
  }],
  [10, 'user without TOTP', async () => {
    const s = new Session()
    await s.login(pick(['bob', 'carol', 'dave', 'frank']))
    expect('user without TOTP', await s.send('GET', '/api/profile'), [200])
    await s.logout()
  }]
]
const weights = ACTIONS.reduce((n, [w]) => n + w, 0)
function action (): () => Promise<void> {
  let r = Math.random() * weights
  for (const [w, , run] of ACTIONS) if ((r -= w) < 0) return run
  return ACTIONS[0][2]
}

// ---- run and sample ----
interface Sample {
  s: number
  requests: number
  heapUsed: number
  rss: number
  external: number
  redisUsed: number
  redisKeys: number
}
const samples: Sample[] = []
let requests = 0
const started = Date.now()
async function sample (): Promise<void> {
  gc?.()
  const m = process.memoryUsage()
  const info = await redis.info('memory')
  samples.push({
    s: Math.round((Date.now() - started) / 1000),
    requests,
    heapUsed: m.heapUsed,
    rss: m.rss,
    external: m.external,
    redisUsed: Number(/used_memory:(\d+)/.exec(info)![1]),
    redisKeys: await redis.dbsize()
  })
}
await sample()
const deadline = started + SECONDS * 1000
let running = true
const sampler = (async () => {
  // eslint-disable-next-line no-unmodified-loop-condition -- set to false once the traffic has ended (below)
  while (running && Date.now() + SAMPLE_MS <= deadline) {
    await sleep(SAMPLE_MS)
    if (running) await sample()
  }
})()
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (Date.now() < deadline) {
    try {
      await action()()
    } catch (err) {
      if (unexpected.length < 50) unexpected.push(`error: ${(err as Error).message}`)
    }
    requests++
  }
}))
running = false
await sampler
await sample()

// ---- report ----
const mb = (b: number): string => (b / 1024 / 1024).toFixed(1)
const avg = (xs: Sample[], f: (s: Sample) => number): number => xs.reduce((n, s) => n + f(s), 0) / xs.length
const gcText = gc ? 'forced before each sample' : 'not exposed (run with --expose-gc)'
console.log(`\nsoak: ${SECONDS} s, concurrency ${CONCURRENCY}, gc ${gcText}`)
console.log('  s   actions   heapUsed MB   rss MB   external MB   redis used MB   redis keys')
for (const s of samples) {
  console.log(`${String(s.s).padStart(4)} ${String(s.requests).padStart(9)} ${mb(s.heapUsed).padStart(13)} ` +
    `${mb(s.rss).padStart(8)} ${mb(s.external).padStart(13)} ${mb(s.redisUsed).padStart(15)} ` +
    `${String(s.redisKeys).padStart(12)}`)
}
const third = Math.floor(samples.length / 3)
const middle = samples.slice(third, 2 * third)
const last = samples.slice(2 * third)
const heapGrowth = avg(last, (s) => s.heapUsed) / avg(middle, (s) => s.heapUsed) - 1
const redisGrowth = avg(last, (s) => s.redisUsed) / avg(middle, (s) => s.redisUsed) - 1
const heapDeltaMb = (avg(last, (s) => s.heapUsed) - avg(middle, (s) => s.heapUsed)) / 1024 / 1024
// levelled off: the last third's average heap within 10 % (or 2 MB) of the middle third's
const levelled = heapGrowth < 0.10 || heapDeltaMb < 2
const first = samples[0]
const end = samples.at(-1)!
const perSecond = Math.round(httpRequests / SECONDS)
console.log(`\nactions ${requests}, HTTP requests ${httpRequests} (${perSecond}/s), audit events ${events}`)
console.log(`answers: ${[...tally].sort().map(([k, n]) => `${k}: ${n}`).join(', ')}`)
console.log(`heapUsed: ${mb(first.heapUsed)} MB at start (after enrolment), ${mb(end.heapUsed)} MB at the end; ` +
  `middle third avg ${mb(avg(middle, (s) => s.heapUsed))} MB, last third avg ${mb(avg(last, (s) => s.heapUsed))} MB ` +
  `(${(heapGrowth * 100).toFixed(1)} %)`)
console.log(`rss: ${mb(first.rss)} → ${mb(end.rss)} MB; ` +
  `Redis used_memory: ${mb(first.redisUsed)} → ${mb(end.redisUsed)} MB ` +
  `(last vs middle third ${(redisGrowth * 100).toFixed(1)} %), keys ${first.redisKeys} → ${end.redisKeys}`)
console.log(`unexpected answers: ${unexpected.length === 0 ? 'none' : `\n  ${unexpected.join('\n  ')}`}`)
console.log(`verdict: heap ${levelled ? 'LEVELLED OFF' : 'STILL GROWING'}`)

await app.close()
agent.destroy()
for (const fn of cleanups.reverse()) await fn()
redis.disconnect()
await server.stop()
process.exit(levelled && unexpected.length === 0 ? 0 : 1)
