// The HTTP scenarios: what each sends with autocannon and which answers it expects.
// Shared by the runner (benchmarks/run.ts) and the smoke test (test/bench-smoke.test.ts).
import autocannon from 'autocannon'
import { DEFAULT_TOTP_PARAMS, generateCode } from '../plugin/totp/index.js'
import { APP_PREFIX, BASE_PREFIX, STEP_UP_MAX_AGE, STEP_UP_PATH } from './app.js'
import { POLICY_ROLES, wrongCode, type Population, type SeededUser } from './seed.js'

export type ScenarioName = 'health' | 'session-only' | 'gate' | 'gate-plain' | 'gate-policies' | 'verify' | 'flood'

/** One request as a scenario sends it (on connection `conn`, numbered from 0 in each load). */
export interface RequestSpec {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: string
}

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
   * The requests of a slot: 0 is the warm-up, 1..rounds the measured rounds, rounds + 1 the run
   * alone that counts Redis commands and CPU. Where requests change state (flood), every slot has
   * its own users.
   */
  request: (slot: number) => (conn: number) => RequestSpec
  /** autocannon options sending `request(slot)` (a load of this scenario alone). */
  options: (slot: number) => Partial<autocannon.Options>
  /** Anything that went against the scenario's rules (e.g. users reused), reported with the results. */
  notes: () => string[]
}

const JSON_HEADERS = { 'content-type': 'application/json' }

// autocannon options sending `make(conn)` on every request of connection `conn`.
export function requestOptions (make: (conn: number) => RequestSpec): Partial<autocannon.Options> {
  let next = 0
  return {
    setupClient: (client) => {
      const conn = next++
      client.setRequests([{ setupRequest: (request) => ({ ...request, ...make(conn) }) }])
    }
  }
}

// One session per connection, as a browser keeps its cookie.
const perConnection = (path: string, users: SeededUser[]) => (conn: number): RequestSpec =>
  ({ method: 'GET', path, headers: { cookie: users[conn % users.length].cookie } })

// A distinct client address per flood user (a botnet), named through the trusted loopback proxy.
const ipOf = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

export function httpScenarios (pop: Population, opts: { rounds: number }): HttpScenario[] {
  // verify: every request takes the next user; warm-up and measurement continue the same list
  let verifyNext = 0
  let verifyReused = 0
  const verifyRequest = () => (): RequestSpec => {
    if (verifyNext >= pop.verify.length) verifyReused++
    const user = pop.verify[verifyNext++ % pop.verify.length]
    const code = generateCode(user.secret as Buffer, DEFAULT_TOTP_PARAMS)
    return {
      method: 'POST',
      path: `${APP_PREFIX}/totp/verify`,
      headers: { ...JSON_HEADERS, cookie: user.cookie },
      body: `{"code":"${code}"}`
    }
  }

  // flood: round robin over the slot's users, each with a code no step in reach accepts
  const perSlot = Math.floor(pop.flood.length / (opts.rounds + 2))
  if (perSlot < 1) throw new Error(`flood needs at least ${opts.rounds + 2} users`)
  const wrong = pop.flood.map((u) => wrongCode(u.secret as Buffer))
  const floodRequest = (slot: number) => {
    const from = slot * perSlot
    const to = from + perSlot
    let i = from
    return (): RequestSpec => {
      const k = i
      i = i + 1 >= to ? from : i + 1
      return {
        method: 'POST',
        path: `${APP_PREFIX}/totp/verify`,
        headers: { ...JSON_HEADERS, cookie: pop.flood[k].cookie, 'x-forwarded-for': ipOf(k) },
        body: `{"code":"${wrong[k]}"}`
      }
    }
  }
  const scenario = (s: Omit<HttpScenario, 'options'>): HttpScenario =>
    ({ ...s, options: (slot) => requestOptions(s.request(slot)) })

  return [
    scenario({
      name: 'health',
      what: 'GET /health: sibling scope, no session, no plugin',
      target: null,
      expected: { 200: 'ok' },
      perRequest: 'request',
      request: () => () => ({ method: 'GET', path: '/health' }),
      notes: () => []
    }),
    scenario({
      name: 'session-only',
      what: `GET ${BASE_PREFIX}/profile: @fastify/session on RedisSessionStore, no plugin`,
      target: null,
      expected: { 200: 'profile' },
      perRequest: 'request',
      request: () => perConnection(`${BASE_PREFIX}/profile`, pop.base),
      notes: () => []
    }),
    scenario({
      name: 'gate',
      what: `GET ${APP_PREFIX}/profile: the same route and session options, plugin gate; ` +
        'enrolled user, verified session',
      target: { of: 'session-only', min: 0.85 },
      expected: { 200: 'profile' },
      perRequest: 'gated request',
      request: () => perConnection(`${APP_PREFIX}/profile`, pop.gate),
      notes: () => []
    }),
    scenario({
      name: 'gate-plain',
      what: `GET ${APP_PREFIX}/profile: plugin gate; user neither enrolled nor enforced`,
      target: { of: 'session-only', min: 0.85 },
      expected: { 200: 'profile' },
      perRequest: 'gated request',
      request: () => perConnection(`${APP_PREFIX}/profile`, pop.plain),
      notes: () => []
    }),
    scenario({
      name: 'gate-policies',
      what: `GET ${STEP_UP_PATH}: plugin gate on a step-up route (maxAge ${STEP_UP_MAX_AGE} s); enrolled user ` +
        `holding a role of the tenant's enforceRoles (${POLICY_ROLES.join(', ')}; grace period set), ` +
        'session verified at seeding',
      target: { of: 'session-only', min: 0.85 },
      expected: { 200: 'profile' },
      perRequest: 'gated request',
      request: () => perConnection(STEP_UP_PATH, pop.policy),
      notes: () => {
        // the seeded marks outlive the run by far; were it not so, 401s would be reported as unexpected
        const age = (Date.now() - pop.verifiedAt) / 1000
        return age > STEP_UP_MAX_AGE
          ? [`the run outlasted the step-up maxAge (${Math.round(age)} s > ${STEP_UP_MAX_AGE} s): ` +
              'late 401s are expiries']
          : []
      }
    }),
    scenario({
      name: 'verify',
      what: `POST ${APP_PREFIX}/totp/verify: valid code, each request a new pending session of another enrolled user`,
      target: { of: 'session-only', min: 0.4 },
      expected: { 200: 'verified' },
      perRequest: 'verification',
      request: verifyRequest,
      notes: () => verifyReused > 0
        ? [`ran out of seeded users: ${verifyReused} requests reused a user (their 401s are replays)`]
        : []
    }),
    scenario({
      name: 'flood',
      what: `POST ${APP_PREFIX}/totp/verify: wrong codes round robin over ${perSlot} users per round, one IP each`,
      target: { of: 'session-only', min: 0.4 },
      expected: { 401: 'wrong code (failures 1-5 of a user)', 429: 'user locked' },
      perRequest: 'attempt',
      request: floodRequest,
      notes: () => []
    })
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
export function runLoad (
  url: string,
  scenario: Partial<autocannon.Options>,
  load: { connections: number, seconds?: number, amount?: number }
): Promise<LoadResult> {
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
      resolve({
        requests,
        seconds: result.duration,
        rps: requests / result.duration,
        latencies,
        statuses,
        errors: result.errors,
        timeouts: result.timeouts
      })
    })
    instance.on('response', (_client, _status, _bytes, ms) => { latencies.push(ms) })
  })
}

export interface InterleavedLoad {
  connections: number
  seconds: number
  /** Length of each slice (ms); slices alternate between the two kinds of request. */
  sliceMs: number
  /** Requests sent in the first `guardMs` of a slice are not counted, nor is that time. */
  guardMs: number
}

/**
 * One autocannon run whose requests alternate between two kinds every `sliceMs`, on the same
 * connections: what each kind of request sends is chosen when it is sent. Both kinds meet the
 * same machine within a fraction of a second of each other, so a noisy neighbour or a drift
 * weighs on both alike. Each kind's throughput is the requests it sent in its slices, after
 * a guard long enough for the other kind's requests still in flight to be answered (they would
 * otherwise slow the first moments of the slice), over the time counted; the first slice (the
 * connections opening) and the last two (requests the end of the run cuts off) are not counted.
 * Answers (statuses, latencies) go to the kind and slice their request was sent in; errors and
 * timeouts (autocannon does not say which request they hit) to both kinds.
 */
export function runInterleaved (
  url: string,
  kinds: [(conn: number) => RequestSpec, (conn: number) => RequestSpec],
  load: InterleavedLoad
): Promise<[LoadResult, LoadResult]> {
  const { sliceMs, guardMs } = load
  const slices = Math.floor(load.seconds * 1000 / sliceMs)
  if (slices < 5 || guardMs >= sliceMs) {
    throw new Error('runInterleaved: at least 5 slices, and a guard shorter than a slice')
  }
  // the slices counted: 1 .. slices - 3 (even: the first kind, odd: the second)
  const counted = [0, 0]
  for (let k = 1; k <= slices - 3; k++) counted[k % 2]++
  return new Promise((resolve, reject) => {
    const results: LoadResult[] = [0, 1]
      .map(() => ({ requests: 0, seconds: 0, rps: 0, latencies: [], statuses: {}, errors: 0, timeouts: 0 }))
    const sent: Array<{ kind: number, slice: number, counts: boolean }> = []
    const connOf = new WeakMap<object, number>()
    let next = 0
    const t0 = performance.now()
    const instance = autocannon({
      url,
      connections: load.connections,
      pipelining: 1,
      timeout: 10,
      duration: load.seconds,
      setupClient: (client) => {
        const conn = next++
        connOf.set(client, conn)
        client.setRequests([{
          setupRequest: (request) => {
            const t = performance.now() - t0
            const slice = Math.floor(t / sliceMs)
            const kind = slice % 2
            sent[conn] = { kind, slice, counts: slice >= 1 && slice <= slices - 3 && t - slice * sliceMs >= guardMs }
            return { ...request, ...kinds[kind](conn) }
          }
        }])
      }
    }, (err, result) => {
      if (err) {
        reject(err)
        return
      }
      for (const [i, r] of results.entries()) {
        r.seconds = counted[i] * (sliceMs - guardMs) / 1000
        r.rps = r.requests / r.seconds
        // autocannon does not say which request an error or a timeout hit: both kinds get them
        r.errors = result.errors
        r.timeouts = result.timeouts
      }
      resolve(results as [LoadResult, LoadResult])
    })
    const of = (client: object): { kind: number, counts: boolean } | undefined => sent[connOf.get(client) ?? -1]
    instance.on('response', (client, status, _bytes, ms) => {
      const s = of(client)
      if (s === undefined || !s.counts) return
      const r = results[s.kind]
      r.requests++
      r.statuses[status] = (r.statuses[status] ?? 0) + 1
      r.latencies.push(ms)
    })
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
