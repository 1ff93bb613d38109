// The one table, the JSON and the SVG chart of the ratios.
import { percentile, type LoadResult, type ScenarioName } from './scenarios.js'
import type { MemoryResult } from './checks.js'
import type { CoreResult } from './core.js'

export interface ScenarioReport {
  name: ScenarioName
  what: string
  rps: number
  requests: number
  seconds: number
  p50: number
  p99: number
  statuses: Record<string, number>
  expected: Record<number, string>
  unexpected: Record<string, number>
  /**
   * Throughput over the baseline's measured around this scenario's runs (see baselineAround), whatever the
   * target.
   */
  ratio: number
  /**
   * req/s of the baseline (session-only) in the runs interleaved with this scenario's; null for the baseline
   * itself.
   */
  baselineAround: number | null
  /** req/s of each round, and its ratio to the baseline interleaved with it, to show the noise. */
  rounds: Array<{ rps: number, ratio: number }>
  target: { of: ScenarioName, min: number } | null
  met: boolean | null
  redis: {
    per: string
    /** INFO commandstats delta / requests: every command Redis executed, those inside scripts included. */
    commandsPerRequest: number
    commands: Record<string, number>
    /** Commands the app's client sent / requests: network round trips (a script call is one). */
    roundTripsPerRequest: number | null
    roundTrips: Record<string, number> | null
  }
  /**
   * CPU time per request: the app's process (process.cpuUsage) and Redis' (INFO cpu); steadier than req/s on a
   * busy machine.
   */
  cpu: { appMicrosPerRequest: number, redisMicrosPerRequest: number }
  notes: string[]
}

export interface BenchReport {
  date: string
  machine: { cores: number, cpu: string, node: string, redis: string, platform: string, memoryGiB: number }
  config: {
    connections: number
    warmupSeconds: number
    seconds: number
    rounds: number
    sliceMs: number
    guardMs: number
    countSeconds: number
    pipelining: number
    redis: string
    autoPipelining: boolean
  }
  seeding: {
    ms: number
    users: number
    sessions: number
    /** Copies of gate-policies' tenant settings (one per shard). */
    settings?: number
    commands: number
    enrolledUsers: number
  }
  scenarios: ScenarioReport[]
  core: CoreResult & { target: number, met: boolean }
  memory: MemoryResult
  flood: {
    verifiedSessions: number
    consumedSteps: number
    lockedUsers: number
    users: number
    sessionsScanned: number
  }
  missed: string[]
  totalSeconds: number
}

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ms = (n: number): string => n < 10 ? n.toFixed(2) : n.toFixed(1)

function statusText (s: ScenarioReport): string {
  return Object.entries(s.statuses)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([code, n]) => {
      const meaning = s.expected[Number(code)]
      return meaning === undefined ? `${code}×${fmt(n)} UNEXPECTED` : `${code}×${fmt(n)}`
    })
    .join(' ')
}

function targetText (s: ScenarioReport): string {
  if (s.name === 'health') return 'ceiling'
  if (s.name === 'session-only') return 'baseline'
  return s.target === null ? '' : `≥ ${s.target.min.toFixed(2)}`
}

const verdict = (met: boolean | null): string => met === null ? '' : met ? 'yes' : 'MISSED'

/** The one table, as Markdown (readable in a terminal, pasteable into the README). */
export function renderTable (r: BenchReport): string {
  const head = [
    'scenario', 'req/s', 'session-only around', '× session-only', 'target', 'met', 'p50 ms', 'p99 ms',
    'answers (status×count)', 'Redis cmds / req', 'round trips / req', 'app CPU µs / req', 'Redis CPU µs / req'
  ]
  const rows: string[][] = r.scenarios.map((s) => [
    s.name,
    fmt(s.rps),
    s.baselineAround === null ? '' : fmt(s.baselineAround),
    s.ratio.toFixed(2),
    targetText(s),
    verdict(s.met),
    ms(s.p50),
    ms(s.p99),
    statusText(s),
    s.redis.commandsPerRequest.toFixed(2),
    s.redis.roundTripsPerRequest === null ? '' : s.redis.roundTripsPerRequest.toFixed(2),
    fmt(s.cpu.appMicrosPerRequest),
    fmt(s.cpu.redisMicrosPerRequest)
  ])
  rows.push([
    'core',
    `${fmt(r.core.verifyOps)} verifies/s`,
    `raw ${fmt(r.core.rawOps)}/s`,
    `${r.core.ratio.toFixed(2)} × raw`,
    `≥ ${r.core.target.toFixed(2)} × raw`,
    verdict(r.core.met),
    '', '',
    '',
    '', '', '', ''
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const cell = (c: string, i: number): string =>
    i === 0 || i === 4 || i === 8 ? c.padEnd(widths[i]) : c.padStart(widths[i])
  const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`
  const ruleCell = (w: number, i: number): string =>
    i === 0 || i === 3 || i === 7 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`
  const rule = `|${widths.map(ruleCell).join('|')}|`
  return [line(head), rule, ...rows.map(line)].join('\n')
}

/** The lines under the table: what it ran on, seeding, memory, the flood's outcome, misses. */
export function renderNotes (r: BenchReport): string {
  const m = r.machine
  const expectedNon2xx = r.scenarios
    .filter((s) => Object.keys(s.expected).some((c) => Number(c) >= 300))
    .map((s) => `${s.name}: ${Object.entries(s.expected).map(([c, what]) => `${c} = ${what}`).join(', ')}`)
  const autoPipelining = r.config.autoPipelining ? 'with' : 'without'
  const ratiosPerRound = r.scenarios
    .filter((s) => s.target !== null)
    .map((s) => `${s.name} ${s.rounds.map((x) => x.ratio.toFixed(2)).join('/')}`)
    .join(', ')
  const lines = [
    `${m.cores} cores (${m.cpu}), Node ${m.node}, Redis ${m.redis} (${r.config.redis}); ${r.date}.`,
    `autocannon in the runner process, the app in a child process (ioredis ${autoPipelining} auto-pipelining); ` +
      `${r.config.connections} connections, pipelining ${r.config.pipelining}; ` +
      `${r.config.warmupSeconds} s warm-up, then ${r.config.seconds} s per scenario in ${r.config.rounds} rounds; ` +
      'in each round every scenario runs once interleaved with session-only in one autocannon run ' +
      `(the two alternate every ${r.config.sliceMs} ms on the same connections; the first ${r.config.guardMs} ms ` +
      'of each slice, the first slice and the last two are not counted), and its ratio is to the session-only ' +
      'requests of the same runs (the "session-only around" column); each round starts one scenario further on. ' +
      `Redis commands, round trips and CPU per request: from a ${r.config.countSeconds} s run of each scenario ` +
      `alone after the rounds. Ratio per round: ${ratiosPerRound}.`,
    'Fair comparison: session-only, gate, gate-plain and gate-policies run in the same process, with the same ' +
      '@fastify/session options, RedisSessionStore, Redis client and handler; each sends its own users\' sessions, ' +
      'one per connection (session-only: as an app without the plugin keeps them; gate: verified sessions of ' +
      'enrolled users; gate-plain: sessions of users without TOTP; gate-policies: verified sessions of enrolled ' +
      'users holding a role the tenant enforces, on a step-up route), so that the two stores interleaved in one ' +
      'run never rewrite each other\'s values; fastify-totp-gate is registered at the root, ' +
      '/base and /health opt out ' +
      '(config.totp false), so session-only pays nothing for the plugin.',
    `Seeding: ${fmt(r.seeding.enrolledUsers)} enrolled users, ${fmt(r.seeding.sessions)} sessions ` +
      `and ${fmt(r.seeding.settings ?? 0)} copies of a tenant's settings ` +
      `(${fmt(r.seeding.commands)} Redis writes, pipelined) in ${(r.seeding.ms / 1000).toFixed(2)} s.`,
    `Redis memory per enrolled user: ${fmt(r.memory.bytesPerUser)} bytes (MEMORY USAGE of every key a user owns, ` +
      `${r.memory.keysPerUser.toFixed(2)} keys/user, ${fmt(r.memory.sampledUsers)} users sampled, ` +
      `min ${r.memory.min}, max ${r.memory.max}; target ≤ ${r.memory.target}: ${r.memory.met ? 'met' : 'MISSED'}). ` +
      `A session (the app's, not the plugin's) takes ${fmt(r.memory.sessionBytes)} bytes.`,
    `Flood: ${fmt(r.flood.users)} users attacked (warm-up included), ${fmt(r.flood.lockedUsers)} of them locked ` +
      `after their free failures, ${r.flood.consumedSteps} time steps consumed, ${r.flood.verifiedSessions} ` +
      `verified sessions of theirs among ${fmt(r.flood.sessionsScanned)} sessions scanned.`,
    `Expected non-2xx: ${expectedNon2xx.join('; ')}.`,
    'Redis cmds / req: INFO commandstats delta over the scenario\'s run alone (commands run inside Lua scripts ' +
      'included) / requests; round trips / req: commands the app\'s ioredis client sent / requests; CPU µs / req: ' +
      'the app process\' CPU time (process.cpuUsage) and Redis\' (INFO cpu) / requests, steadier than req/s when ' +
      'other processes share the cores.'
  ]
  for (const s of r.scenarios) for (const n of s.notes) lines.push(`${s.name}: ${n}`)
  lines.push(r.missed.length === 0 ? 'Every target met.' : `MISSED: ${r.missed.join('; ')}.`)
  return lines.map((l) => `- ${l}`).join('\n')
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** A horizontal bar per ratio with its target line; hand-written SVG. */
export function renderSvg (r: BenchReport): string {
  const bars = [
    ...r.scenarios.filter((s) => s.target !== null).map((s) => ({
      label: s.name,
      sub: `× ${s.target?.of}`,
      value: s.ratio,
      target: s.target?.min ?? 0,
      met: s.met === true
    })),
    { label: 'core', sub: '× raw HMAC loop', value: r.core.ratio, target: r.core.target, met: r.core.met }
  ]
  const W = 760
  const left = 170
  const right = 70
  const rowH = 44
  const top = 56
  const H = top + bars.length * rowH + 48
  const max = Math.max(1.2, ...bars.map((b) => Math.max(b.value, b.target))) * 1.05
  const x = (v: number): number => left + (W - left - right) * v / max
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">')
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="600" fill="#222">` +
    'fastify-totp-gate: throughput ratio to its baseline (same run)</text>')
  const subtitle = `${r.machine.cores} cores, Node ${r.machine.node}, Redis ${r.machine.redis}, ` +
    `${r.date.slice(0, 10)}; dashed line = target`
  out.push(`<text x="${left}" y="40" fill="#555">${esc(subtitle)}</text>`)
  for (let t = 0; t <= max; t += max > 3 ? 1 : 0.25) {
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 6}" x2="${x(t).toFixed(1)}" y2="${top + bars.length * rowH}" ` +
      'stroke="#e5e5e5"/>')
    out.push(`<text x="${x(t).toFixed(1)}" y="${top + bars.length * rowH + 16}" text-anchor="middle" fill="#777">` +
      `${t.toFixed(2)}</text>`)
  }
  bars.forEach((b, i) => {
    const y = top + i * rowH
    const color = b.met ? '#2e7d32' : '#c62828'
    out.push(`<text x="${left - 10}" y="${y + 17}" text-anchor="end" font-weight="600" fill="#222">` +
      `${esc(b.label)}</text>`)
    out.push(`<text x="${left - 10}" y="${y + 32}" text-anchor="end" fill="#777" font-size="11">` +
      `${esc(b.sub)}</text>`)
    out.push(`<rect x="${left}" y="${y + 6}" width="${(x(b.value) - left).toFixed(1)}" height="26" ` +
      `fill="${color}" rx="2"/>`)
    // the value right of the bar, or right of the target line when that is just past the bar
    out.push(`<text x="${(x(Math.max(b.value, b.target)) + 6).toFixed(1)}" y="${y + 24}" fill="#222" ` +
      `font-weight="600">${b.value.toFixed(2)}</text>`)
    out.push(`<line x1="${x(b.target).toFixed(1)}" y1="${y + 1}" x2="${x(b.target).toFixed(1)}" y2="${y + 37}" ` +
      'stroke="#111" stroke-width="2" stroke-dasharray="4 3"/>')
    out.push(`<text x="${(x(b.target) - 4).toFixed(1)}" y="${y + 44}" text-anchor="end" fill="#111" font-size="10">` +
      `≥ ${b.target.toFixed(2)}</text>`)
  })
  const ceiling = r.scenarios.find((s) => s.name === 'health')?.ratio.toFixed(2) ?? '?'
  out.push(`<text x="${left}" y="${H - 10}" fill="#777" font-size="11">` +
    `green: target met · red: missed · health (ceiling) is ${ceiling} × session-only</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** A LoadResult's fields that go into the report as they are. */
export const loadFields = (
  l: LoadResult
): Pick<ScenarioReport, 'rps' | 'requests' | 'seconds' | 'p50' | 'p99' | 'statuses'> => ({
  rps: l.rps,
  requests: l.requests,
  seconds: l.seconds,
  p50: percentile(l.latencies, 50),
  p99: percentile(l.latencies, 99),
  statuses: l.statuses
})
