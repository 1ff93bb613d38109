// The server process of the benchmark (forked by run.ts, so autocannon's CPU is not the app's;
// run.ts compiles it with tsc first and runs the JavaScript: benchmarks/tsconfig.json).
// Config comes in BENCH_CONFIG (JSON); it answers over IPC: 'ready' with its port, and
// 'counters' with the Redis round trips its client has sent so far, by command, and its CPU time.
import { Redis } from 'ioredis'
import { buildBenchApp, type BenchAppOptions } from './app.js'
import { countRoundTrips } from './redis.js'

type Config = Omit<BenchAppOptions, 'redis'> & { redisUrl: string, autoPipelining: boolean }

const config = JSON.parse(process.env.BENCH_CONFIG ?? 'null') as Config | null
if (config === null || process.send === undefined) {
  throw new Error('benchmarks/server.ts is started by benchmarks/run.ts')
}
const send = process.send.bind(process)
const cpuMicros = (): number => { const u = process.cpuUsage(); return u.user + u.system }

const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableAutoPipelining: config.autoPipelining })
const roundTrips = countRoundTrips(redis)
const { redisUrl: _url, autoPipelining: _ap, ...appOptions } = config
const app = await buildBenchApp({ ...appOptions, redis })
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
if (address === null || typeof address === 'string') throw new Error('no TCP address')

process.on('message', (message: { type: string }) => {
  if (message.type === 'counters') send({ type: 'counters', roundTrips: { ...roundTrips }, cpuMicros: cpuMicros() })
  if (message.type === 'stop') {
    // a normal exit, so that --cpu-prof writes its profile
    app.close().then(() => {
      redis.disconnect()
      process.exit(0)
    })
  }
})
process.on('disconnect', () => process.exit(0))
send({ type: 'ready', port: address.port, pid: process.pid })
