// Redis for the benchmark: a private redis-server on a free port (or REDIS_URL), and
// the measurements read from it (INFO commandstats, MEMORY USAGE, version).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Redis } from 'ioredis'

const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000

export interface PrivateRedis {
  url: string
  port: number
  pid: number
  stop (): Promise<void>
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function answers (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST)
    const done = (ok: boolean) => { socket.destroy(); resolve(ok) }
    socket.setTimeout(300, () => done(false))
    socket.once('error', () => done(false))
    socket.once('data', (chunk) => done(chunk.toString().startsWith('+PONG')))
    socket.once('connect', () => socket.write('PING\r\n'))
  })
}

/** Starts `redis-server --port P --save '' --appendonly no` on a free loopback port; it dies with this process. */
export async function startPrivateRedis (): Promise<PrivateRedis> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fastify-totp-bench-redis-'))
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning']
  // PR_SET_PDEATHSIG: the server goes even if the benchmark is killed.
  const setpriv = spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0
  const child: ChildProcess = setpriv
    ? spawn('setpriv', ['--pdeathsig', 'SIGKILL', 'redis-server', ...args], { stdio: 'ignore' })
    : spawn('redis-server', args, { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const kill = (): void => { child.kill('SIGKILL') }
  process.once('exit', kill)
  const stop = async (): Promise<void> => {
    process.removeListener('exit', kill)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const timer = setTimeout(kill, 3000)
    await exited
    clearTimeout(timer)
    rmSync(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + START_TIMEOUT_MS
  while (!(await answers(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop()
      throw new Error(`redis-server did not start on port ${port}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return { url: `redis://${HOST}:${port}`, port, pid: child.pid ?? -1, stop }
}

/** `INFO commandstats` as calls per command (lower case, e.g. `evalsha`, `get`, `hget`). */
export async function commandStats (redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('commandstats')
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2])
  return out
}

/** after − before, without the benchmark's own INFO calls; commands a script runs are counted too. */
export function statsDelta (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [name, calls] of Object.entries(after)) {
    if (name === 'info') continue
    const d = calls - (before[name] ?? 0)
    if (d > 0) out[name] = d
  }
  return out
}

/** CPU time Redis has used so far (user + system), in microseconds. */
export async function redisCpuMicros (redis: Redis): Promise<number> {
  const text = await redis.info('cpu')
  const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN)
  return Math.round((field('used_cpu_user') + field('used_cpu_sys')) * 1e6)
}

export async function redisVersion (redis: Redis): Promise<string> {
  const text = await redis.info('server')
  return /^redis_version:(.+)$/m.exec(text)?.[1].trim() ?? 'unknown'
}

/** Deletes every key matching `pattern` (SCAN + UNLINK): the benchmark's own keys on a shared Redis. */
export async function deleteMatching (redis: Redis, pattern: string): Promise<number> {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000)
    cursor = next
    if (keys.length > 0) deleted += await redis.unlink(...keys)
  } while (cursor !== '0')
  return deleted
}

/**
 * Counts the commands a client sends (round trips; a script is one), by name.
 * The count is kept on the client so the server process can report it.
 */
export function countRoundTrips (redis: Redis): Record<string, number> {
  const counts: Record<string, number> = {}
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((command, stream) => {
    counts[command.name] = (counts[command.name] ?? 0) + 1
    return send(command, stream)
  }) as Redis['sendCommand']
  return counts
}
