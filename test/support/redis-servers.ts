// Private redis-server processes for tests that stop, hang or cluster Redis.
// Every process lives in its own temp dir, dies with the test process (exit
// hook, plus PR_SET_PDEATHSIG through setpriv when available) and is never the
// shared server on 6379.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Cluster, type ClusterOptions, type Redis } from 'ioredis'

export interface RedisServer {
  port: number
  /** `redis://127.0.0.1:PORT` */
  url: string
  /** Stops the server (SIGTERM, SIGKILL after 3 s) and resolves once the process has exited. */
  stop(): Promise<void>
  /** Starts it again after `stop()`, on the same port; resolves once it answers. */
  start(): Promise<void>
  /** SIGSTOP: the server keeps its connections open but answers nothing (a hung Redis). */
  freeze(): Promise<void>
  /** SIGCONT after `freeze()`. */
  thaw(): Promise<void>
}

export interface RedisClusterHandle {
  nodes: { host: string, port: number }[]
  /** Stops every node and removes their directories. */
  stop(): Promise<void>
  stopNode(port: number): Promise<void>
  /** Restarts a stopped node with its cluster config; resolves once it reports `cluster_state:ok`. */
  startNode(port: number): Promise<void>
  /** SIGKILL: a crash (no shutdown save, no goodbye to the cluster bus); `startNode` brings it back. */
  killNode(port: number): Promise<void>
  /** SIGSTOP / SIGCONT one node: it keeps its connections but answers nothing. */
  freezeNode(port: number): Promise<void>
  thawNode(port: number): Promise<void>
  /** Resolves once every replica of the master on `port` has acknowledged all of its writes so far. */
  waitReplicated(port: number, timeoutMs?: number): Promise<void>
  /** Resolves once every running node reports all 16384 slots served by reachable masters. */
  waitSlotsServed(timeoutMs?: number): Promise<void>
  /**
   * After `killNode`/`stopNode` of a master with replicas: resolves once the running nodes
   * agree that a replica took over its slots (none owned by `port` any more, all served).
   */
  waitPromoted(port: number, timeoutMs?: number): Promise<void>
}

/**
 * Extra `redis-server` arguments, appended after the defaults so they override them,
 * e.g. `['--appendonly', 'yes']` for a server whose data survives `stop()`/`start()`,
 * or `['--cluster-require-full-coverage', 'no']`.
 */
export type ServerArgs = string[]

const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000
const CLUSTER_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 3_000
const CLUSTER_BUS_OFFSET = 10_000

const live = new Set<ChildProcess>()
const dirs = new Set<string>()
let exitHookInstalled = false

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL')
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })
}

let setprivAvailable: boolean | undefined
function hasSetpriv (): boolean {
  setprivAvailable ??= spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0
  return setprivAvailable
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function canBind (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

async function freeClusterPort (taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort()
    const bus = port + CLUSTER_BUS_OFFSET
    if (bus > 65535 || taken.has(port) || taken.has(bus)) continue
    if (await canBind(bus)) return port
  }
  throw new Error('no free port pair (port, port + 10000) found for a Redis Cluster node')
}

// The pid of the server answering on the port: readiness is "our process answers",
// not "something answers" (another server may hold the port).
function serverPid (port: number, timeoutMs = 500): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST)
    let reply = ''
    const finish = (pid: number | null) => {
      socket.destroy()
      resolve(pid)
    }
    socket.setTimeout(timeoutMs, () => finish(null))
    socket.once('error', () => finish(null))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.startsWith('-')) finish(null)
      const match = /process_id:(\d+)\r\n/.exec(reply)
      if (match) finish(Number(match[1]))
    })
    socket.once('connect', () => socket.write('INFO server\r\n'))
  })
}

function redisCli (args: string[], timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

class RedisProcess {
  readonly dir: string
  #child: ChildProcess | null = null
  #exited: Promise<void> = Promise.resolve()
  #log: string[] = []

  constructor (readonly port: number, readonly extraArgs: (dir: string) => string[] = () => []) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), `fastify-totp-gate-redis-${port}-`))
    dirs.add(this.dir)
  }

  get running (): boolean {
    return this.#child !== null
  }

  async start (): Promise<void> {
    if (this.#child) return
    installExitHook()
    const args = [
      '--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--loglevel', 'warning', ...this.extraArgs(this.dir)
    ]
    // PR_SET_PDEATHSIG: the server dies even if the test process is SIGKILLed.
    const [cmd, argv] = hasSetpriv()
      ? ['setpriv', ['--pdeathsig', 'SIGKILL', 'redis-server', ...args]]
      : ['redis-server', args]
    const child = spawn(cmd, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    live.add(child)
    this.#log = []
    const keep = (chunk: Buffer) => {
      this.#log.push(...chunk.toString().split('\n').filter(Boolean))
      this.#log.splice(0, Math.max(0, this.#log.length - 20))
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    let exited = false
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        exited = true
        live.delete(child)
        if (this.#child === child) this.#child = null
        resolve()
      })
    })
    child.once('error', (err) => this.#log.push(String(err)))

    const deadline = Date.now() + START_TIMEOUT_MS
    while ((await serverPid(this.port)) !== child.pid) {
      if (exited) throw new Error(`redis-server on port ${this.port} exited at start:\n${this.#log.join('\n')}`)
      if (Date.now() > deadline) {
        await this.stop()
        throw new Error(`redis-server on port ${this.port} did not answer within ${START_TIMEOUT_MS} ms:\n${this.#log.join('\n')}`)
      }
      await sleep(25)
    }
  }

  async stop (): Promise<void> {
    const child = this.#child
    if (!child) return
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
    await this.#exited
    clearTimeout(timer)
  }

  async kill (): Promise<void> {
    const child = this.#child
    if (!child) return
    child.kill('SIGKILL')
    await this.#exited
  }

  signal (signal: NodeJS.Signals): void {
    if (!this.#child) throw new Error(`redis-server on port ${this.port} is not running`)
    this.#child.kill(signal)
  }

  removeDir (): void {
    rmSync(this.dir, { recursive: true, force: true })
    dirs.delete(this.dir)
  }
}

/** Starts a standalone redis-server on a free port (or `opts.port`). */
export async function startRedis (opts: { port?: number, args?: ServerArgs } = {}): Promise<RedisServer> {
  const attempts = opts.port === undefined ? 3 : 1
  let proc: RedisProcess | undefined
  for (let attempt = 1; ; attempt++) {
    proc = new RedisProcess(opts.port ?? await freePort(), () => opts.args ?? [])
    try {
      await proc.start()
      break
    } catch (err) {
      proc.removeDir()
      // another process may have taken the port between freePort() and the bind
      if (attempt >= attempts) throw err
    }
  }
  const server = proc
  return {
    port: server.port,
    url: `redis://${HOST}:${server.port}`,
    stop: () => server.stop(),
    start: () => server.start(),
    freeze: async () => server.signal('SIGSTOP'),
    thaw: async () => server.signal('SIGCONT')
  }
}

async function clusterInfo (port: number): Promise<Record<string, string>> {
  const text = await redisCli(['-h', HOST, '-p', String(port), 'CLUSTER', 'INFO'], 2_000)
  return Object.fromEntries(text.split(/\r?\n/).filter((line) => line.includes(':')).map((line) => line.split(':', 2) as [string, string]))
}

async function waitClusterOk (ports: number[], expectedNodes: number, timeoutMs = CLUSTER_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  for (;;) {
    const infos = await Promise.all(ports.map((port) =>
      clusterInfo(port).catch((err: Error) => ({ error: err.message }) as Record<string, string>)))
    const pending = infos
      .map((info, i) => ({ port: ports[i], info }))
      .filter(({ info }) => info.cluster_state !== 'ok' || info.cluster_slots_assigned !== '16384' || Number(info.cluster_known_nodes) !== expectedNodes)
    if (pending.length === 0) return
    last = pending.map(({ port, info }) => `${port}: ${info.error ?? `state=${info.cluster_state} slots=${info.cluster_slots_assigned} known=${info.cluster_known_nodes}`}`).join('; ')
    if (Date.now() > deadline) throw new Error(`Redis Cluster not ok within ${timeoutMs} ms: ${last}`)
    await sleep(100)
  }
}

/**
 * Starts `masters × (1 + replicasPerMaster)` cluster-enabled servers, joins them with
 * `redis-cli --cluster create` and resolves once every node reports `cluster_state:ok`
 * with all 16384 slots assigned.
 */
export async function startRedisCluster (
  opts: { masters?: number, replicasPerMaster?: number, basePort?: number, args?: ServerArgs } = {}
): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicasPerMaster ?? 0
  if (!Number.isInteger(masters) || masters < 3) throw new Error('a Redis Cluster needs at least 3 masters')
  if (!Number.isInteger(replicas) || replicas < 0) throw new Error('replicasPerMaster must be a non-negative integer')
  const total = masters * (1 + replicas)

  const ports: number[] = []
  const taken = new Set<number>()
  for (let i = 0; i < total; i++) {
    const port = opts.basePort === undefined ? await freeClusterPort(taken) : opts.basePort + i
    ports.push(port)
    taken.add(port).add(port + CLUSTER_BUS_OFFSET)
  }

  const nodes = new Map(ports.map((port) => [port, new RedisProcess(port, (dir) => [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', path.join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout', '2000',
    // replicas sync at once (Redis 7 waits 5 s for more replicas by default): a replica that
    // never synced does not take over from its master
    '--repl-diskless-sync-delay', '0',
    ...(opts.args ?? [])
  ])]))
  const stopAll = async () => {
    await Promise.all([...nodes.values()].map((node) => node.stop()))
    for (const node of nodes.values()) node.removeDir()
  }

  try {
    await Promise.all([...nodes.values()].map((node) => node.start()))
    await redisCli([
      '--cluster', 'create', ...ports.map((port) => `${HOST}:${port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes'
    ], 30_000)
    await waitClusterOk(ports, total)
    if (replicas > 0) await waitReplicasSynced(ports, masters * replicas)
  } catch (err) {
    await stopAll()
    throw err
  }

  const node = (port: number) => {
    const found = nodes.get(port)
    if (!found) throw new Error(`no cluster node on port ${port}`)
    return found
  }
  return {
    nodes: ports.map((port) => ({ host: HOST, port })),
    stop: stopAll,
    stopNode: (port) => node(port).stop(),
    startNode: async (port) => {
      await node(port).start()
      await waitClusterOk(ports.filter((p) => node(p).running), total)
    },
    killNode: (port) => node(port).kill(),
    waitReplicated: async (port, timeoutMs = CLUSTER_TIMEOUT_MS) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const info = await replicationInfo(port)
        const offset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? NaN)
        const replicas = [...info.matchAll(/slave\d+:.*?state=(\w+),offset=(\d+)/g)]
        if (replicas.length > 0 && replicas.every(([, state, at]) => state === 'online' && Number(at) >= offset)) return
        if (Date.now() > deadline) throw new Error(`replicas of ${port} not caught up within ${timeoutMs} ms: ${info.replace(/\s+/g, ' ')}`)
        await sleep(50)
      }
    },
    freezeNode: async (port) => node(port).signal('SIGSTOP'),
    thawNode: async (port) => node(port).signal('SIGCONT'),
    waitSlotsServed: (timeoutMs = CLUSTER_TIMEOUT_MS) =>
      waitSlotsServed(ports.filter((p) => node(p).running), timeoutMs),
    waitPromoted: async (port, timeoutMs = CLUSTER_TIMEOUT_MS) => {
      const running = ports.filter((p) => node(p).running)
      const deadline = Date.now() + timeoutMs
      // CLUSTER NODES: `id host:port@bus flags master ping pong epoch link slot…`; the old master's
      // line keeps no slot once a replica took over
      const ownsSlots = (text: string): boolean => text.split('\n').some((line) => {
        const fields = line.trim().split(' ')
        return fields[1]?.startsWith(`${HOST}:${port}@`) === true && fields.length > 8
      })
      for (;;) {
        const views = await Promise.all(running.map((p) => redisCli(['-h', HOST, '-p', String(p), 'CLUSTER', 'NODES'], 2_000).catch(() => null)))
        if (views.every((text) => text !== null && !ownsSlots(text))) break
        if (Date.now() > deadline) throw new Error(`no replica took over from ${port} within ${timeoutMs} ms`)
        await sleep(50)
      }
      await waitSlotsServed(running, Math.max(1, deadline - Date.now()))
    }
  }
}

async function replicationInfo (port: number): Promise<string> {
  return redisCli(['-h', HOST, '-p', String(port), 'INFO', 'replication'], 2_000).catch(() => '')
}

// Every replica has finished its initial sync (master_link_status:up).
async function waitReplicasSynced (ports: number[], expected: number, timeoutMs = CLUSTER_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const infos = await Promise.all(ports.map(replicationInfo))
    const inSync = infos.filter((info) => /role:slave\r?\n/.test(info) && /master_link_status:up/.test(info))
    if (inSync.length === expected) return
    if (Date.now() > deadline) throw new Error(`Redis Cluster replicas not in sync within ${timeoutMs} ms`)
    await sleep(100)
  }
}

async function waitSlotsServed (ports: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const infos = await Promise.all(ports.map((port) => clusterInfo(port).catch(() => ({}) as Record<string, string>)))
    if (infos.every((info) => info.cluster_state === 'ok' && info.cluster_slots_ok === '16384')) return
    if (Date.now() > deadline) throw new Error(`slots not all served within ${timeoutMs} ms`)
    await sleep(100)
  }
}

/**
 * An ioredis Cluster client, resolved once it is ready. (A command sent while the client
 * still connects may fail with "Connection is closed" when it drops the connections to
 * nodes it learns hold no slot, and disconnecting it during its ready check throws.)
 */
export async function clusterClient (
  nodes: Array<{ host: string, port: number }>,
  options: ClusterOptions = {}
): Promise<Cluster> {
  const client = new Cluster(nodes, { ...options, redisOptions: { maxRetriesPerRequest: 1, ...options.redisOptions } })
  client.on('error', () => {})
  if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
  return client
}

/** Slot → port of the master serving it, as the cluster itself reports (CLUSTER SLOTS). */
export async function slotOwners (client: Cluster | Redis): Promise<(slot: number) => number | undefined> {
  const ranges = await client.cluster('SLOTS')
  return (slot) => {
    const range = ranges.find(([from, to]) => slot >= from && slot <= to)
    return range === undefined ? undefined : Number(range[2][1])
  }
}

/** The hash slot of a key, asked of the cluster (CLUSTER KEYSLOT). */
export async function keySlot (client: Cluster | Redis, key: string): Promise<number> {
  return Number(await client.cluster('KEYSLOT', key))
}

/**
 * Every key matching `pattern` on every master of a cluster, by the port of the master
 * holding it. (SCAN on a Cluster client reaches one node only.)
 */
export async function clusterKeys (client: Cluster, pattern: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>()
  for (const master of client.nodes('master')) {
    const keys: string[] = []
    let cursor = '0'
    do {
      const [next, batch] = await master.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      keys.push(...batch)
    } while (cursor !== '0')
    found.set(Number(master.options.port), keys)
  }
  return found
}

/** Deletes every key matching `pattern` on every master (one DEL per key: keys of many slots). */
export async function deleteClusterKeys (client: Cluster, pattern: string): Promise<void> {
  for (const [, keys] of await clusterKeys(client, pattern)) {
    for (const key of keys) await client.del(key)
  }
}
