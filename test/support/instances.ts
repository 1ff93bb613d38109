// Many app instances on one Redis (standalone or cluster): one browser session
// whose requests land on any instance. Shared by instances.test.ts (standalone)
// and cluster.test.ts (Redis Cluster).
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import type { Test } from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, newPrefix, wrongCode, type BuildOptions } from '../helpers.js'

/** A browser whose cookie travels with it from instance to instance (a load balancer without affinity). */
export class Browser {
  cookie: string | undefined
  constructor (readonly ip = '127.0.0.1') {}

  async request (app: FastifyInstance, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> {
    const agent = new Agent(app, this.ip)
    agent.cookie = this.cookie
    const res = await agent.request(method, url, payload)
    this.cookie = agent.cookie
    return res
  }

  get (app: FastifyInstance, url: string): Promise<LightMyRequestResponse> { return this.request(app, 'GET', url) }
  post (app: FastifyInstance, url: string, payload?: unknown): Promise<LightMyRequestResponse> { return this.request(app, 'POST', url, payload) }
  login (app: FastifyInstance, username: string, tenant?: string): Promise<LightMyRequestResponse> {
    return this.post(app, '/login', { username, ...(tenant !== undefined ? { tenant } : {}) })
  }
}

/**
 * Three instances as a deployment runs them: same keyPrefix, same encryption key and
 * session secret, each with its own Redis connection.
 */
export async function threeInstances (
  t: Test,
  connect: () => Redis | Cluster | Promise<Redis | Cluster>,
  extra: BuildOptions = {}
): Promise<FastifyInstance[]> {
  const keyPrefix = newPrefix()
  const apps: FastifyInstance[] = []
  for (let i = 0; i < 3; i++) {
    const redis = await connect()
    t.teardown(() => redis.disconnect())
    apps.push((await build(t, { ...extra, redis, keyPrefix })).app)
  }
  return apps
}

/** Enrols `username` through `apps[0]` with the previous step's code (the current one stays free). */
export async function enrolOn (
  t: Test,
  app: FastifyInstance,
  username: string
): Promise<{ browser: Browser, secret: string }> {
  const browser = new Browser()
  t.equal((await browser.login(app, username)).statusCode, 200)
  const setup = await browser.post(app, '/totp/setup')
  t.equal(setup.statusCode, 201, 'setup started')
  const { secret } = setup.json()
  t.equal((await browser.post(app, '/totp/setup/confirm', { code: codeFor(secret, -1) })).statusCode, 200, 'setup confirmed')
  return { browser, secret }
}

/** The many-instance scenarios, against whatever Redis `connect` reaches. */
export function instanceScenarios (
  t: Test,
  label: string,
  connect: () => Redis | Cluster | Promise<Redis | Cluster>
): void {
  t.test(`${label}: R1/R3/S3 one browser session across three instances: enrol on one, verify on another, replay on the third refused`, async (t) => {
    await awayFromStepEdge(6000)
    const [a, b, c] = await threeInstances(t, connect)
    const browser = new Browser()
    t.equal((await browser.login(a, 'alice')).statusCode, 200, 'signed in on A')
    const setup = await browser.post(b, '/totp/setup')
    t.equal(setup.statusCode, 201, 'setup started on B')
    const { secret } = setup.json()
    const confirm = await browser.post(c, '/totp/setup/confirm', { code: codeFor(secret, -1) })
    t.same(confirm.json(), { enabled: true, verified: true }, 'confirmed on C')
    for (const [name, app] of [['A', a], ['B', b], ['C', c]] as const) {
      const res = await browser.get(app, '/api/profile')
      t.equal(res.statusCode, 200, `the verified session passes on ${name}`)
      t.equal(res.json().cart, 'app data', `first-factor data survived the session id change, seen on ${name}`)
    }

    const second = new Browser()
    await second.login(a, 'alice')
    const gated = await second.get(b, '/api/profile')
    t.equal(gated.statusCode, 401, 'a new sign-in is gated on B')
    t.equal(gated.json().code, 'FST_TOTP_REQUIRED')
    const code = codeFor(secret)
    t.equal((await second.post(b, '/totp/verify', { code })).statusCode, 200, 'verified on B')
    t.equal((await second.get(c, '/api/profile')).statusCode, 200, 'and passes on C')

    const third = new Browser()
    await third.login(c, 'alice')
    const replay = await third.post(c, '/totp/verify', { code })
    t.equal(replay.statusCode, 401, 'the same code on C is refused')
    t.equal(replay.json().code, 'FST_TOTP_INVALID_CODE')
    t.equal((await third.get(a, '/api/profile')).statusCode, 401, 'and the replaying session stays gated everywhere')
    const confirmCode = await third.post(a, '/totp/verify', { code: codeFor(secret, -1) })
    t.equal(confirmCode.statusCode, 401, 'the confirming code (used on C) is refused on A')
  })

  t.test(`${label}: S3 60 parallel verifications of one code spread over three instances (60 sessions of one user): exactly one succeeds`, async (t) => {
    await awayFromStepEdge(8000)
    const apps = await threeInstances(t, connect)
    const { secret } = await enrolOn(t, apps[0], 'alice')
    // one IP per session, so that the per-IP budget plays no part
    const browsers = Array.from({ length: 60 }, (_, i) => new Browser(`10.60.${i >> 8}.${(i & 255) + 1}`))
    await Promise.all(browsers.map((br, i) => br.login(apps[i % 3], 'alice')))
    const code = codeFor(secret)
    const results = await Promise.all(browsers.map((br, i) => br.post(apps[(i + 1) % 3], '/totp/verify', { code })))
    const ok = results.map((r, i) => r.statusCode === 200 ? i : -1).filter((i) => i >= 0)
    t.equal(ok.length, 1, 'exactly one 200')
    t.ok(results.every((r) => r.statusCode === 200 || ['FST_TOTP_INVALID_CODE', 'FST_TOTP_LOCKED'].includes(r.json().code)),
      `the others are refused as reused (or locked): ${[...new Set(results.map((r) => r.statusCode))].join(',')}`)
    const pass = await Promise.all(browsers.map((br, i) => br.get(apps[(i + 2) % 3], '/api/profile')))
    t.same(pass.map((r, i) => r.statusCode === 200 ? i : -1).filter((i) => i >= 0), ok, 'only the winner passes the gate, on another instance')
  })

  t.test(`${label}: S4 a lock set through one instance is obeyed by all`, async (t) => {
    await awayFromStepEdge(6000)
    const [a, b, c] = await threeInstances(t, connect)
    const { secret } = await enrolOn(t, a, 'alice')
    const attacker = new Browser('10.70.0.1')
    await attacker.login(a, 'alice')
    for (let i = 1; i <= 5; i++) t.equal((await attacker.post(a, '/totp/verify', { code: wrongCode(secret) })).statusCode, 401, `wrong code ${i} on A`)
    for (const [name, app] of [['B', b], ['C', c]] as const) {
      const victim = new Browser(`10.70.1.${name.charCodeAt(0)}`)
      await victim.login(app, 'alice')
      const res = await victim.post(app, '/totp/verify', { code: codeFor(secret) })
      t.equal(res.statusCode, 429, `the right code on ${name}: 429`)
      t.equal(res.json().code, 'FST_TOTP_LOCKED')
      t.ok(Number(res.headers['retry-after']) > 0 && Number(res.headers['retry-after']) <= 30, `Retry-After on ${name}: ${res.headers['retry-after']}`)
      const status = (await victim.get(app, '/totp/status')).json()
      t.ok(Date.parse(status.lockedUntil) > Date.now(), `status on ${name} shows the lock`)
      t.equal((await victim.get(app, '/api/profile')).statusCode, 401, `still gated on ${name}`)
    }
    t.equal((await attacker.post(c, '/totp/verify', { code: codeFor(secret) })).statusCode, 429, 'the attacker moving to C is locked too')
  })
}
