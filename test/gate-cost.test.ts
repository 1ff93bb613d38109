import t from 'tap'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol, wrongCode } from './helpers.js'
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

t.test('S3/S4 a code check is two plugin commands on standalone Redis: the gate\'s read, then consume or charge', async (t) => {
  await awayFromStepEdge()
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const { app, keyPrefix } = await build(t, { redis })
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')

  const monitor = await redis.monitor()
  t.teardown(() => monitor.disconnect())
  let seen: string[][] = []
  monitor.on('monitor', (_time: string, args: string[], source: string) => { if (source !== 'lua') seen.push(args) })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const pluginCommands = async (body: { code: string }, status: number): Promise<string[][]> => {
    seen = []
    t.equal((await agent.post('/totp/verify', body)).statusCode, status)
    await new Promise((resolve) => setTimeout(resolve, 100))
    return seen.filter((args) => args.some((a) => a.startsWith(keyPrefix) && !a.startsWith(`${keyPrefix}sess:`)))
  }
  const wrong = await pluginCommands({ code: wrongCode(secret) }, 401)
  t.equal(wrong.length, 2, 'a wrong code: the gate\'s read (user, settings, pending, IP) and one charge of user and IP')
  t.ok(wrong[0].includes(`${keyPrefix}ip:127.0.0.1`) && wrong[1].includes(`${keyPrefix}ip:127.0.0.1`), 'both touch the IP\'s counter')
  const right = await pluginCommands({ code: codeFor(secret) }, 200)
  t.equal(right.length, 2, 'a valid code: the gate\'s read and the consume script')
  t.ok([...wrong, ...right].every((args) => /^eval(sha)?$/i.test(args[0])), 'all scripts (EVAL the first time on a connection)')
})
