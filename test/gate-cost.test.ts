import t from 'tap'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol, wrongCode, type Built, type BuildOptions } from './helpers.js'
import { startRedis } from './support/redis-servers.js'

type During = (fn: () => Promise<void>) => Promise<{ plugin: string[][]; sessions: string[][] }>

/**
 * An app on a private Redis whose commands are counted with MONITOR. `during(fn)` runs fn and
 * returns the round trips it caused, split into the plugin's and the session store's
 * (commands a script runs show up with source 'lua': they are not round trips).
 */
async function monitored (t: Test, opts: BuildOptions = {}): Promise<Built & { during: During }> {
  await awayFromStepEdge()
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const built = await build(t, { ...opts, redis })
  const monitor = await redis.monitor()
  t.teardown(() => monitor.disconnect())
  let seen: string[][] = []
  // MONITOR lags on a busy machine: a marker sent on the client and seen on the monitor is a
  // point before which every earlier command has been seen too
  let marks = 0
  const waiting = new Map<string, () => void>()
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (args[0]?.toLowerCase() === 'echo' && waiting.has(args[1])) waiting.get(args[1])?.()
    else if (source !== 'lua') seen.push(args)
  })
  const settled = (): Promise<void> => new Promise((resolve, reject) => {
    const mark = `monitored-${++marks}`
    waiting.set(mark, resolve)
    redis.echo(mark).catch(reject)
  })
  await settled()
  const sessionPrefix = `${built.keyPrefix}sess:`
  const during = async (fn: () => Promise<void>): Promise<{ plugin: string[][]; sessions: string[][] }> => {
    await settled()
    seen = []
    await fn()
    await settled()
    return {
      plugin: seen.filter((args) => args.some((a) => a.startsWith(built.keyPrefix) && !a.startsWith(sessionPrefix))),
      sessions: seen.filter((args) => args.some((a) => a.startsWith(sessionPrefix)))
    }
  }
  return { ...built, during }
}

// The Redis key of the session an agent's cookie names (the id before the signature).
const sessionKey = (agent: Agent, keyPrefix: string): string =>
  `${keyPrefix}sess:${decodeURIComponent((agent.cookie as string).slice('sessionId='.length)).split('.')[0]}`

t.test('R3 gate cost: exactly one Redis command per gated request, whatever the user; session values stay plain JSON (counted with MONITOR)', async (t) => {
  const { app, redis, keyPrefix, during } = await monitored(t)
  const { agent } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const unverified = new Agent(app)
  await unverified.login('alice')
  await app.totp.setEnforced('carol', true)
  const carol = new Agent(app)
  await carol.login('carol')
  const N = 10
  const { plugin, sessions } = await during(async () => {
    for (let i = 0; i < N; i++) {
      t.equal((await agent.get('/api/profile')).statusCode, 200)
      t.equal((await bob.get('/api/profile')).statusCode, 200)
      t.equal((await unverified.get('/api/profile')).statusCode, 401)
      t.equal((await carol.get('/api/profile')).statusCode, 403)
    }
  })
  t.equal(plugin.length, 4 * N, `one plugin command per request (${plugin.length} for ${4 * N} requests)`)
  t.ok(plugin.every((args) => args[0].toLowerCase() === 'evalsha'), 'each is the gate script')
  t.equal(sessions.filter((args) => /^get$/i.test(args[0])).length, 4 * N, 'the session store: one plain GET per request')
  t.ok(sessions.every((args) => /^(get|set)$/i.test(args[0])), 'and nothing but GET and its rolling SET')
  for (const a of [agent, bob, unverified, carol]) {
    const value = await redis.get(sessionKey(a, keyPrefix))
    t.ok(value !== null && value.startsWith('{'), 'a session value is plain JSON')
    t.doesNotThrow(() => JSON.parse(value!))
  }
  const verified = JSON.parse((await redis.get(sessionKey(agent, keyPrefix)))!)
  t.match(verified.totp, { t: 'default', u: 'alice', g: 1 }, 'a verified session holds only its mark: user and generation')
  t.equal(JSON.parse((await redis.get(sessionKey(unverified, keyPrefix)))!).totp, undefined, 'an unverified one none')
})

t.test('R3 gate cost: an opted-out route and a signed-out request cost the plugin no command', async (t) => {
  const { app, during } = await monitored(t)
  const { agent } = await enrol(app, 'alice')
  const stranger = new Agent(app)
  const { plugin } = await during(async () => {
    t.equal((await agent.get('/public')).statusCode, 200)
    t.equal((await stranger.get('/api/profile')).statusCode, 200)
    t.equal((await stranger.get('/public')).statusCode, 200)
  })
  t.same(plugin, [], 'no plugin command')
})

t.test('S3/S4 a code check costs the gate\'s read and one deciding script, a right code as a wrong one', async (t) => {
  const { app, keyPrefix, during } = await monitored(t)
  const { secret } = await enrol(app, 'alice')
  const ipKey = `${keyPrefix}ip:127.0.0.1`
  const verify = (agent: Agent, code: string, status: number) => during(async () => {
    t.equal((await agent.post('/totp/verify', { code })).statusCode, status)
  })
  const agent = new Agent(app)
  await agent.login('alice')
  const wrong = (await verify(agent, wrongCode(secret), 401)).plugin
  const right = await verify(agent, codeFor(secret), 200)
  for (const [what, cmds] of [['a wrong code', wrong], ['a right code', right.plugin]] as const) {
    t.equal(cmds.length, 2, `${what}: the gate's read (user, settings, pending) and the deciding script`)
    t.ok(cmds.every((args) => /^evalsha$/i.test(args[0])), `${what}: both scripts`)
    t.ok(cmds[1].includes(ipKey), `${what}: the deciding script checks (and charges) the IP's budget`)
  }
  t.same(wrong.map((args) => args.length), right.plugin.map((args) => args.length), 'the same commands, argument for argument')
  const writes = right.sessions.filter((args) => /^set$/i.test(args[0]))
  t.equal(writes.length, 1, 'S5: the new session is written once (regenerate), not again on send')
  t.equal(right.sessions.filter((args) => /^del$/i.test(args[0])).length, 1, 'and the old one deleted')
})

t.test('R3/R11–R15 gate cost: still one Redis command per gated request with every policy (roles, grace, step-up, required, trusted device)', async (t) => {
  const { app, during } = await monitored(t, {
    plugin: { trustDevice: true, verifiedFor: 3600 },
    before: (a) => {
      a.get('/api/payments', { config: { totp: { required: true } } }, async () => ({ ok: true }))
      a.get('/api/transfer', { config: { totp: { maxAge: 3600 } } }, async () => ({ ok: true }))
    }
  })
  await app.totp.setSettings({ enforceRoles: ['ROLE_USER_MANAGEMENT_READ'], gracePeriod: 3600 })
  const { agent, secret } = await enrol(app, 'alice')
  const reader = new Agent(app)
  await reader.login('reader') // role-enforced, in its grace period
  const bob = new Agent(app)
  await bob.login('bob')
  // a browser with a trusted device, signed in again: the device is read in the gate's command
  const trusted = new Agent(app)
  await trusted.login('alice')
  const res = await trusted.post('/totp/verify', { code: codeFor(secret), trustDevice: true })
  const device = res.cookies.find((c) => c.name === 'totp_device')!.value
  await trusted.post('/logout')
  await trusted.login('alice')
  const N = 5
  const { plugin } = await during(async () => {
    for (let i = 0; i < N; i++) {
      t.equal((await agent.get('/api/transfer')).statusCode, 200)
      t.equal((await agent.get('/api/payments')).statusCode, 200)
      t.equal((await reader.get('/api/profile')).statusCode, 200)
      t.equal((await bob.get('/api/payments')).statusCode, 403)
    }
    const cookie = `${trusted.cookie!}; totp_device=${device}`
    t.equal((await trusted.request('GET', '/api/profile', undefined, { cookie })).statusCode, 200)
  })
  t.equal(plugin.length, 4 * N + 1, `one plugin command per request (${plugin.length} for ${4 * N + 1} requests)`)
  t.ok(plugin.every((args) => args[0].toLowerCase() === 'evalsha'), 'each is the gate script')
})
