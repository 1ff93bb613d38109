// The HTTP scenarios: what each sends with autocannon and which answers it expects.
// Shared by the runner (benchmarks/run.ts) and the smoke test (test/bench-smoke.test.ts).
import autocannon from 'autocannon'
import { DEFAULT_TOTP_PARAMS, generateCode } from '../plugin/totp/index.js'
import { APP_PREFIX, BASE_PREFIX } from './app.js'
import { wrongCode, type Population, type SeededUser } from './seed.js'

export type ScenarioName = 'health' | 'session-only' | 'gate' | 'gate-plain' | 'verify' | 'flood'

export interface HttpScenario {
  name: ScenarioName
  what: string
  /** Target: at least `min` × the throughput of `of`, measured in the same run. */
  target: { of: ScenarioName, min: number } | null
  /** Every status this scenario should see, with what it means. */
  expected: Record<number, string>
  /** Redis round trips and commands are reported per request of this kind. */
  perRequest: string
  /**
   * autocannon options for a slot: 0 is the warm-up, 1..rounds the measured rounds.
   * Where requests change state (flood), every slot has its own users.
   */
  options: (slot: number) => Partial<autocannon.Options>
  /** Anything that went against the scenario's rules (e.g. users reused), reported with the results. */
  notes: () => string[]
}

const JSON_HEADERS = { 'content-type': 'application/json' }

// One session per connection, as a browser keeps its cookie.
function perConnection (path: string, users: SeededUser[]): Partial<autocannon.Options> {
  let next = 0
  return {
    requests: [{ method: 'GET', path }],
    setupClient: (client) => { client.setHeaders({ cookie: users[next++ % users.length].cookie }) }
  }
}

// A distinct client address per flood user (a botnet), named through the trusted loopback proxy.
const ipOf = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

export function httpScenarios (pop: Population, opts: { rounds: number }): HttpScenario[] {
  // verify: every request takes the next user; warm-up and measurement continue the same list
  let verifyNext = 0
  let verifyReused = 0
  const verifyOptions = (): Partial<autocannon.Options> => ({
    requests: [{
      method: 'POST',
      path: `${APP_PREFIX}/totp/verify`,
      setupRequest: (request) => {
        if (verifyNext >= pop.verify.length) verifyReused++
        const user = pop.verify[verifyNext++ % pop.verify.length]
        const code = generateCode(user.secret as Buffer, DEFAULT_TOTP_PARAMS)
        return { ...request, headers: { ...JSON_HEADERS, cookie: user.cookie }, body: `{"code":"${code}"}` }
      }
    }]
  })

  // flood: round robin over the slot's users, each with a code no step in reach accepts
  const perSlot = Math.floor(pop.flood.length / (opts.rounds + 1))
  if (perSlot < 1) throw new Error(`flood needs at least ${opts.rounds + 1} users`)
  const wrong = pop.flood.map((u) => wrongCode(u.secret as Buffer))
  const floodOptions = (slot: number): Partial<autocannon.Options> => {
    const from = slot * perSlot
    const to = from + perSlot
    let i = from
    return {
      requests: [{
        method: 'POST',
        path: `${APP_PREFIX}/totp/verify`,
        setupRequest: (request) => {
          const k = i
          i = i + 1 >= to ? from : i + 1
          return {
            ...request,
            headers: { ...JSON_HEADERS, cookie: pop.flood[k].cookie, 'x-forwarded-for': ipOf(k) },
            body: `{"code":"${wrong[k]}"}`
          }
        }
      }]
    }
  }

  return [
    {
      name: 'health',
      what: 'GET /health: sibling scope, no session, no plugin',
      target: null,
      expected: { 200: 'ok' },
      perRequest: 'request',
      options: () => ({ requests: [{ method: 'GET', path: '/health' }] }),
      notes: () => []
    },
    {
      name: 'session-only',
      what: `GET ${BASE_PREFIX}/profile: @fastify/session on RedisSessionStore, no plugin`,
      target: null,
      expected: { 200: 'profile' },
      perRequest: 'request',
      options: () => perConnection(`${BASE_PREFIX}/profile`, pop.gate),
      notes: () => []
    },
    {
      name: 'gate',
      what: `GET ${APP_PREFIX}/profile: same sessions, plugin gate; enrolled user, verified session`,
      target: { of: 'session-only', min: 0.9 },
      expected: { 200: 'profile' },
      perRequest: 'gated request',
      options: () => perConnection(`${APP_PREFIX}/profile`, pop.gate),
      notes: () => []
    },
    {
      name: 'gate-plain',
      what: `GET ${APP_PREFIX}/profile: plugin gate; user neither enrolled nor enforced`,
      target: { of: 'session-only', min: 0.9 },
      expected: { 200: 'profile' },
      perRequest: 'gated request',
      options: () => perConnection(`${APP_PREFIX}/profile`, pop.plain),
      notes: () => []
    },
    {
      name: 'verify',
      what: `POST ${APP_PREFIX}/totp/verify: valid code, each request a new pending session of another enrolled user`,
      target: { of: 'session-only', min: 0.4 },
      expected: { 200: 'verified' },
      perRequest: 'verification',
      options: verifyOptions,
      notes: () => verifyReused > 0 ? [`ran out of seeded users: ${verifyReused} requests reused a user (their 401s are replays)`] : []
    },
    {
      name: 'flood',
      what: `POST ${APP_PREFIX}/totp/verify: wrong codes round robin over ${perSlot} users per round, one IP each`,
      target: { of: 'session-only', min: 0.4 },
      expected: { 401: 'wrong code (failures 1-5 of a user)', 429: 'user locked' },
      perRequest: 'attempt',
      options: floodOptions,
      notes: () => []
    }
  ]
}

export interface LoadResult {
  requests: number
  seconds: number
  rps: number
  /** Milliseconds per answered request, in order (for percentiles over several runs). */
  latencies: number[]
  statuses: Record<string, number>
  errors: number
  timeouts: number
}

/** One autocannon run, bounded by `seconds` (or by `amount` requests). */
export function runLoad (url: string, scenario: Partial<autocannon.Options>, load: { connections: number, seconds?: number, amount?: number }): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = []
    const instance = autocannon({
      url,
      connections: load.connections,
      pipelining: 1,
      timeout: 10,
      ...(load.amount !== undefined ? { amount: load.amount } : { duration: load.seconds ?? 1 }),
      ...scenario
    }, (err, result) => {
      if (err) {
        reject(err)
        return
      }
      const statuses: Record<string, number> = {}
      for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = Number(count)
      const requests = Object.values(statuses).reduce((a, b) => a + b, 0)
      resolve({ requests, seconds: result.duration, rps: requests / result.duration, latencies, statuses, errors: result.errors, timeouts: result.timeouts })
    })
    instance.on('response', (_client, _status, _bytes, ms) => { latencies.push(ms) })
  })
}

/** Several runs as one: requests and seconds add up, percentiles are over every answer. */
export function mergeLoads (loads: LoadResult[]): LoadResult {
  const statuses: Record<string, number> = {}
  for (const l of loads) for (const [code, n] of Object.entries(l.statuses)) statuses[code] = (statuses[code] ?? 0) + n
  const requests = loads.reduce((a, l) => a + l.requests, 0)
  const seconds = loads.reduce((a, l) => a + l.seconds, 0)
  return {
    requests,
    seconds,
    rps: requests / seconds,
    latencies: loads.flatMap((l) => l.latencies),
    statuses,
    errors: loads.reduce((a, l) => a + l.errors, 0),
    timeouts: loads.reduce((a, l) => a + l.timeouts, 0)
  }
}

/** The p-th percentile (0..100) of latencies, in ms. */
export function percentile (latencies: number[], p: number): number {
  if (latencies.length === 0) return NaN
  const sorted = Float64Array.from(latencies).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/** Statuses a scenario did not expect (and connection errors), for the report and the smoke test. */
export function unexpected (scenario: HttpScenario, r: LoadResult): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [code, n] of Object.entries(r.statuses)) if (!(Number(code) in scenario.expected)) out[code] = n
  if (r.errors > 0) out.errors = r.errors
  return out
}
