import t from 'tap'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, enrol } from './helpers.js'
import { startRedis } from './support/redis-servers.js'

t.test('R3 the gate costs one Redis command per protected request (counted with MONITOR)', async (t) => {
  await awayFromStepEdge()
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const { app, keyPrefix } = await build(t, { redis })
  const { agent } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const unverified = new Agent(app)
  await unverified.login('alice')

  const monitor = await redis.monitor()
  t.teardown(() => monitor.disconnect())
  const seen: string[][] = []
  // commands a script runs show up with source 'lua': they are not round trips
  monitor.on('monitor', (_time: string, args: string[], source: string) => { if (source !== 'lua') seen.push(args) })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const N = 10
  for (let i = 0; i < N; i++) {
    t.equal((await agent.get('/api/profile')).statusCode, 200)
    t.equal((await bob.get('/api/profile')).statusCode, 200)
    t.equal((await unverified.get('/api/profile')).statusCode, 401)
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  const ours = seen.filter((args) => args.some((a) => a.startsWith(keyPrefix) && !a.startsWith(`${keyPrefix}sess:`)))
  t.equal(ours.length, 3 * N, `one plugin command per request (${ours.length} for ${3 * N} requests)`)
  t.ok(ours.every((args) => args[0].toLowerCase() === 'evalsha'), 'each is the gate script')
  const sessions = seen.filter((args) => args.some((a) => a.startsWith(`${keyPrefix}sess:`)))
  t.ok(sessions.length >= 3 * N, 'the session store reads as the baseline does')
})
