// npm run bench: one Redis, one server process, one run; every ratio is to a baseline
// measured in this run. Prints one table and writes benchmarks/results/{<date>,latest}.json
// and benchmarks/results/ratios.svg (a partial run, with --only, writes partial-<date>.json only).
//
//   npm run bench                          everything (about 4 minutes)
//   npm run bench -- --only=gate,verify    some scenarios (session-only is always run: it is the baseline)
//   npm run bench -- --profile             the server runs with --cpu-prof (benchmarks/profiles/)
//   npm run bench -- --autopipelining      the app's ioredis client with enableAutoPipelining (baseline too)
//   npm run bench -- --seconds=10 --rounds=5 --slice=250 --guard=50 --count-seconds=2 --warmup=2 --connections=50 \
//                    --users=100000
//   node --import tsx benchmarks/profile-summary.ts benchmarks/profiles/<file>.cpuprofile   (after --profile)
import { fork, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createKeyRing } from '../plugin/crypto/seal.js'
import { DEFAULT_KEY_PREFIX } from '../plugin/options.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import { DEFAULT_SESSION_PREFIX } from '../plugin/session-store.js'
import { runCore } from './core.js'
import {
  commandStats, deleteMatching, redisCpuMicros, redisVersion, startPrivateRedis, statsDelta, type PrivateRedis
} from './redis.js'
import { loadFields, renderNotes, renderSvg, renderTable, type BenchReport, type ScenarioReport } from './report.js'
import {
  httpScenarios, mergeLoads, runInterleaved, runLoad, unexpected, type LoadResult, type ScenarioName
} from './scenarios.js'
import { seed, type Population } from './seed.js'
import { floodOutcome, memoryPerUser } from './checks.js'

const started = performance.now()
const arg = (name: string): string | undefined =>
  process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const flag = (name: string): boolean => process.argv.slice(2).includes(`--${name}`)
const num = (name: string, def: number): number => {
  const v = arg(name)
  if (v === undefined) return def
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`)
  return n
}

const SECONDS = num('seconds', 14)
const ROUNDS = Math.round(num('rounds', 7))
const SLICE_MS = num('slice', 250)
const GUARD_MS = num('guard', 50)
const COUNT_SECONDS = num('count-seconds', 2)
const AUTO_PIPELINING = flag('autopipelining')
const WARMUP = num('warmup', 2)
const CONNECTIONS = num('connections', 50)
const VERIFY_USERS = num('users', 120_000)
const FLOOD_USERS = num('flood-users', 150 * (ROUNDS + 2))
const PROFILE = flag('profile')
const only = arg('only')?.split(',') as ScenarioName[] | undefined
const log = (line: string): void => { process.stderr.write(`${line}\n`) }
// after a load, requests still in the server finish before the next counters are read
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 300))
const DEADLINE_MS = 6 * 60_000

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))
const RESULTS = here('./results/')
const BUILD = here('./.build/')
const PROFILES = here('./profiles/')

/**
 * Compiles the server and the plugin with tsc into benchmarks/.build (benchmarks/tsconfig.json):
 * the app runs the plugin's JavaScript as `npm run build` ships it, not through tsx, whose
 * transform adds a call that names each closure every time the code creates one.
 */
function compileServer (): string {
  const started = performance.now()
  rmSync(BUILD, { recursive: true, force: true })
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const built = spawnSync(process.execPath, [tsc, '-p', here('./tsconfig.json')], { stdio: 'inherit' })
  if (built.status !== 0) throw new Error(`tsc could not compile the benchmark server (exit ${built.status})`)
  cpSync(here('../plugin/stores/lua/'), `${BUILD}plugin/stores/lua/`, { recursive: true })
  log(`compiled the server and the plugin with tsc in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return `${BUILD}benchmarks/server.js`
}

// --- Redis: REDIS_URL (shared: own key prefix, keys deleted at the end) or a private server
let privateRedis: PrivateRedis | null = null
let redisUrl = process.env.REDIS_URL
const shared = redisUrl !== undefined
const runId = randomBytes(4).toString('hex')
const keyPrefix = shared ? `bench:${runId}:` : DEFAULT_KEY_PREFIX
const sessionPrefix = shared ? `bench:${runId}:sess:` : DEFAULT_SESSION_PREFIX
if (!shared) {
  privateRedis = await startPrivateRedis()
  redisUrl = privateRedis.url
}
const redis = new Redis(redisUrl as string, { maxRetriesPerRequest: 1 })
let server: ChildProcess | null = null

async function cleanup (): Promise<void> {
  if (server !== null && server.exitCode === null) {
    const exited = new Promise((resolve) => server?.once('exit', resolve))
    server.send({ type: 'stop' })
    const timer = setTimeout(() => server?.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  if (shared) {
    const n = await deleteMatching(redis, `${keyPrefix}*`)
    log(`deleted the benchmark's ${n} keys (${keyPrefix}*) from ${redisUrl}`)
  }
  redis.disconnect()
  if (privateRedis !== null) await privateRedis.stop()
}
// a failed cleanup is not reported: the process exits either way
process.once('SIGINT', () => { cleanup().catch(() => {}).finally(() => process.exit(130)) })
// every load is bounded; this bounds the whole run too
setTimeout(() => {
  log(`bench: still running after ${DEADLINE_MS / 60_000} minutes, stopping`)
  cleanup().catch(() => {}).finally(() => process.exit(2))
}, DEADLINE_MS).unref()

try {
  const version = await redisVersion(redis)
  const encryptionKey = randomBytes(32).toString('base64')
  const sessionSecret = randomBytes(32).toString('base64url')
  const keys = new KeyLayout(keyPrefix, 64)
  const sharing = shared ? ` (shared: key prefix ${keyPrefix}; command counts include other clients)` : ' (private)'
  log(`Redis ${version} at ${redisUrl}${sharing}`)

  // --- seed
  const seeded = await seed({
    redisUrl: redisUrl as string,
    keys,
    keyRing: createKeyRing(encryptionKey),
    sessionPrefix,
    sessionSecret,
    counts: {
      base: CONNECTIONS,
      verify: VERIFY_USERS,
      gate: CONNECTIONS,
      plain: CONNECTIONS,
      flood: FLOOD_USERS,
      policy: CONNECTIONS
    }
  })
  const pop: Population = seeded.population
  log(`seeded ${seeded.users} enrolled users, ${seeded.sessions} sessions and ${seeded.settings} tenant settings ` +
    `copies in ${(seeded.ms / 1000).toFixed(2)} s`)

  // --- the server process, on the plugin as it ships (compiled by tsc)
  const serverJs = compileServer()
  mkdirSync(PROFILES, { recursive: true })
  const execArgv = PROFILE ? ['--cpu-prof', '--cpu-prof-dir', PROFILES] : []
  const child = fork(serverJs, [], {
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      BENCH_CONFIG: JSON.stringify({
        redisUrl, keyPrefix, sessionPrefix, encryptionKey, sessionSecret, autoPipelining: AUTO_PIPELINING
      })
    }
  })
  server = child
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start within 30 s')), 30_000)
    child.once('exit', (code) => reject(new Error(`the server exited (${code}) before it was ready`)))
    child.on('message', (m: { type: string, port?: number }) => {
      if (m.type === 'ready') {
        clearTimeout(timer)
        resolve(m.port as number)
      }
    })
  })
  const url = `http://127.0.0.1:${port}`
  // the app's Redis round trips by command, and its CPU time (µs)
  const counters = (): Promise<{ roundTrips: Record<string, number>, cpuMicros: number }> => new Promise((resolve) => {
    const onMessage = (m: { type: string, roundTrips: Record<string, number>, cpuMicros: number }): void => {
      if (m.type !== 'counters') return
      child.off('message', onMessage)
      resolve(m)
    }
    child.on('message', onMessage)
    child.send({ type: 'counters' })
  })

  // --- scenarios: a warm-up of each, then rounds. In each round every other scenario runs once,
  // interleaved with the baseline in one autocannon run: the two kinds of request alternate every
  // SLICE_MS on the same connections (see runInterleaved), so that a noisy neighbour or a drift
  // weighs on both alike; its ratio is to the baseline of the same runs. Each round starts one
  // scenario further on. Then each scenario runs alone once, for the Redis command and CPU counts.
  const scenarios = httpScenarios(pop, { rounds: ROUNDS })
    .filter((s) => only === undefined || only.includes(s.name) || s.name === 'session-only')
  for (const scenario of scenarios) {
    log(`warm-up ${scenario.name}: ${scenario.what}`)
    await runLoad(url, scenario.options(0), { connections: CONNECTIONS, seconds: WARMUP })
    await settle()
  }
  interface Acc {
    loads: LoadResult[]
    solo: LoadResult[]
    commands: Record<string, number>
    trips: Record<string, number>
    appCpu: number
    redisCpu: number
  }
  const runs = new Map<ScenarioName, Acc>()
  const accOf = (name: ScenarioName): Acc => {
    const acc = runs.get(name) ?? { loads: [], solo: [], commands: {}, trips: {}, appCpu: 0, redisCpu: 0 }
    runs.set(name, acc)
    return acc
  }
  // per scenario: the baseline interleaved with it (requests and seconds), and each round's ratio
  const paired = new Map<ScenarioName, { requests: number, seconds: number, ratios: number[] }>()
  const add = (into: Record<string, number>, d: Record<string, number>): void => {
    for (const [k, v] of Object.entries(d)) into[k] = (into[k] ?? 0) + v
  }
  const base = scenarios.find((s) => s.name === 'session-only') as (typeof scenarios)[number]
  const others = scenarios.filter((s) => s !== base)
  const slot = SECONDS / ROUNDS
  for (let round = 1; round <= ROUNDS; round++) {
    const shift = (round - 1) % Math.max(1, others.length)
    for (const scenario of [...others.slice(shift), ...others.slice(0, shift)]) {
      const [baseline, load] = await runInterleaved(
        url,
        [base.request(round), scenario.request(round)],
        { connections: CONNECTIONS, seconds: 2 * slot, sliceMs: SLICE_MS, guardMs: GUARD_MS }
      )
      await settle()
      accOf(base.name).loads.push(baseline)
      accOf(scenario.name).loads.push(load)
      const around = paired.get(scenario.name) ?? { requests: 0, seconds: 0, ratios: [] }
      around.requests += baseline.requests
      around.seconds += baseline.seconds
      around.ratios.push(load.rps / baseline.rps)
      paired.set(scenario.name, around)
      log(`round ${round} ${scenario.name}: ${Math.round(load.rps)} req/s ${JSON.stringify(load.statuses)}, ` +
        `session-only ${Math.round(baseline.rps)} req/s ${JSON.stringify(baseline.statuses)}: ` +
        `${(load.rps / baseline.rps).toFixed(2)}`)
    }
  }
  // each scenario alone: Redis commands (INFO commandstats), the app's round trips, CPU
  for (const scenario of scenarios) {
    const [cs0, c0, rc0] = await Promise.all([commandStats(redis), counters(), redisCpuMicros(redis)])
    const load = await runLoad(url, scenario.options(ROUNDS + 1), { connections: CONNECTIONS, seconds: COUNT_SECONDS })
    await settle()
    const [cs1, c1, rc1] = await Promise.all([commandStats(redis), counters(), redisCpuMicros(redis)])
    const acc = accOf(scenario.name)
    acc.solo.push(load)
    add(acc.commands, statsDelta(cs0, cs1))
    add(acc.trips, statsDelta(c0.roundTrips, c1.roundTrips))
    acc.appCpu += c1.cpuMicros - c0.cpuMicros
    acc.redisCpu += rc1 - rc0
    log(`alone ${scenario.name}: ${Math.round(load.rps)} req/s ${JSON.stringify(load.statuses)}`)
  }
  const pairedRps = (name: ScenarioName): number => {
    const p = paired.get(name) as { requests: number, seconds: number }
    return p.requests / p.seconds
  }
  const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0)
  const reports: ScenarioReport[] = scenarios.map((scenario) => {
    const acc = runs.get(scenario.name) as Acc
    const load = mergeLoads(acc.loads)
    const solo = mergeLoads(acc.solo)
    const all = mergeLoads([...acc.loads, ...acc.solo])
    return {
      name: scenario.name,
      what: scenario.what,
      ...loadFields(load),
      statuses: all.statuses,
      expected: scenario.expected,
      unexpected: unexpected(scenario, all),
      ratio: 0,
      rounds: scenario === base
        ? acc.loads.map((l) => ({ rps: l.rps, ratio: 1 }))
        : (paired.get(scenario.name)?.ratios ?? []).map((ratio, i) => ({ rps: acc.loads[i].rps, ratio })),
      baselineAround: scenario.name === 'session-only' ? null : pairedRps(scenario.name),
      target: scenario.target,
      met: null,
      redis: {
        per: scenario.perRequest,
        commandsPerRequest: sum(acc.commands) / Math.max(1, solo.requests),
        commands: acc.commands,
        roundTripsPerRequest: sum(acc.trips) / Math.max(1, solo.requests),
        roundTrips: acc.trips
      },
      cpu: {
        appMicrosPerRequest: acc.appCpu / Math.max(1, solo.requests),
        redisMicrosPerRequest: acc.redisCpu / Math.max(1, solo.requests)
      },
      notes: scenario.notes()
    }
  })
  const missed: string[] = []
  for (const s of reports) {
    // to the baseline runs around this scenario's (the baseline's own row: 1)
    s.ratio = s.baselineAround === null ? 1 : s.rps / s.baselineAround
    const bad = Object.entries(s.unexpected)
    if (bad.length > 0) missed.push(`${s.name} got unexpected answers ${bad.map(([c, n]) => `${c}×${n}`).join(' ')}`)
    if (s.target === null) continue
    s.met = s.ratio >= s.target.min && bad.length === 0
    if (s.ratio < s.target.min) {
      const short = ((1 - s.ratio / s.target.min) * 100).toFixed(1)
      missed.push(`${s.name} ${s.ratio.toFixed(2)} < ${s.target.min.toFixed(2)} × ${s.target.of} (short by ${short} %)`)
    }
  }

  // --- after the load: the flood's outcome and the memory per user
  const flood = await floodOutcome(redis, keys, sessionPrefix, pop)
  const floodReport = reports.find((s) => s.name === 'flood')
  if (floodReport !== undefined && (flood.verifiedSessions > 0 || flood.consumedSteps > 0)) {
    missed.push(`flood produced ${flood.verifiedSessions} verified sessions and consumed ${flood.consumedSteps} steps`)
    floodReport.met = false
  }
  const memory = await memoryPerUser(redis, keys, sessionPrefix, pop)
  if (!memory.met) missed.push(`memory per enrolled user ${Math.round(memory.bytesPerUser)} > ${memory.target} bytes`)

  // the server is stopped before the in-process core benchmark, so it has the CPU to itself
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve())
    child.send({ type: 'stop' })
  })
  server = null
  log('core: verifyCode() vs a raw node:crypto HMAC-SHA1 loop')
  const core = runCore()
  const coreTarget = 0.5
  if (core.ratio < coreTarget) missed.push(`core ${core.ratio.toFixed(2)} < ${coreTarget} × raw`)

  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: {
      cores: os.cpus().length,
      cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
      node: process.version,
      redis: version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10
    },
    config: {
      connections: CONNECTIONS,
      warmupSeconds: WARMUP,
      seconds: SECONDS,
      rounds: ROUNDS,
      sliceMs: SLICE_MS,
      guardMs: GUARD_MS,
      countSeconds: COUNT_SECONDS,
      pipelining: 1,
      redis: shared ? 'REDIS_URL, shared' : 'private redis-server',
      autoPipelining: AUTO_PIPELINING
    },
    seeding: {
      ms: seeded.ms,
      users: seeded.users + 2 * CONNECTIONS,
      sessions: seeded.sessions,
      settings: seeded.settings,
      commands: seeded.commands,
      enrolledUsers: seeded.users
    },
    scenarios: reports,
    core: { ...core, target: coreTarget, met: core.ratio >= coreTarget },
    memory,
    flood,
    missed,
    totalSeconds: 0
  }
  report.totalSeconds = (performance.now() - started) / 1000

  mkdirSync(RESULTS, { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  const stamp = report.date.replace(/:/g, '-').replace(/\..*$/, '')
  const file = `${RESULTS}${only === undefined ? '' : 'partial-'}${stamp}.json`
  writeFileSync(file, json)
  const written = [file.replace(process.cwd() + '/', '')]
  if (only === undefined) {
    writeFileSync(`${RESULTS}latest.json`, json)
    writeFileSync(`${RESULTS}ratios.svg`, renderSvg(report))
    written.push('benchmarks/results/latest.json', 'benchmarks/results/ratios.svg')
  }

  console.log(renderTable(report))
  console.log()
  console.log(renderNotes(report))
  console.log(`- Written: ${written.join(', ')}; ${report.totalSeconds.toFixed(0)} s in all.`)
  process.exitCode = missed.length === 0 ? 0 : 1
} finally {
  await cleanup()
}
