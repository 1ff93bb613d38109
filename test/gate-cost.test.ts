import t from 'tap'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol, wrongCode, type Built } from './helpers.js'
import { startRedis } from './support/redis-servers.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * An app on a private Redis whose commands are counted with MONITOR. `during(fn)` runs fn and
 * returns the round trips it caused, split into the plugin's and the session store's
 * (commands a script runs show up with source 'lua': they are not round trips).
 */
async function monitored (t: Test): Promise<Built & { during: (fn: () => Promise<void>) => Promise<{ plugin: string[][]; sessions: string[][] }> }> {
  await awayFromStepEdge()
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const built = await build(t, { redis })
  const monitor = await redis.monitor()
  t.teardown(() => monitor.disconnect())
  let seen: string[][] = []
  monitor.on('monitor', (_time: string, args: string[], source: string) => { if (source !== 'lua') seen.push(args) })
  await sleep(50)
  const sessionPrefix = `${built.keyPrefix}sess:`
  const during = async (fn: () => Promise<void>): Promise<{ plugin: string[][]; sessions: string[][] }> => {
    seen = []
    await fn()
    await sleep(100)
    return {
      plugin: seen.filter((args) => args.some((a) => a.startsWith(built.keyPrefix) && !a.startsWith(sessionPrefix))),
      sessions: seen.filter((args) => args.some((a) => a.startsWith(sessionPrefix)))
    }
  }
  return { ...built, during }
}

t.test('R3 the gate costs one Redis command per protected request (counted with MONITOR)', async (t) => {
  const { app, during } = await monitored(t)
  const { agent } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const unverified = new Agent(app)
  await unverified.login('alice')

  const N = 10
  const { plugin, sessions } = await during(async () => {
    for (let i = 0; i < N; i++) {
      t.equal((await agent.get('/api/profile')).statusCode, 200)
      t.equal((await bob.get('/api/profile')).statusCode, 200)
      t.equal((await unverified.get('/api/profile')).statusCode, 401)
    }
  })
  t.equal(plugin.length, 3 * N, `one plugin command per request (${plugin.length} for ${3 * N} requests)`)
  t.ok(plugin.every((args) => args[0].toLowerCase() === 'evalsha'), 'each is the gate script')
  t.ok(sessions.length >= 3 * N, 'the session store reads as the baseline does')
})

t.test('S3/S4 a code check is two plugin commands on standalone Redis: the gate\'s read, then consume or charge', async (t) => {
  const { app, keyPrefix, during } = await monitored(t)
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  const verify = (code: string, status: number) => during(async () => {
    t.equal((await agent.post('/totp/verify', { code })).statusCode, status)
  })

  const wrong = (await verify(wrongCode(secret), 401)).plugin
  t.equal(wrong.length, 2, 'a wrong code: the gate\'s read (user, settings, pending, IP) and one charge of user and IP')
  t.ok(wrong.every((args) => args.includes(`${keyPrefix}ip:127.0.0.1`)), 'both touch the IP\'s counter')
  const right = (await verify(codeFor(secret), 200)).plugin
  t.equal(right.length, 2, 'a valid code: the gate\'s read and the consume script')
  t.ok([...wrong, ...right].every((args) => /^eval(sha)?$/i.test(args[0])), 'all scripts (EVAL the first time on a connection)')
})
