import t from 'tap'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { inspect } from 'node:util'
import { Agent, awayFromStepEdge, build, codeFor, enrol, REDIS_URL, wrongCode, type Built, type BuildOptions } from './helpers.js'
import { startRedis } from './support/redis-servers.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import { readAlongHeader, RedisTotpStore } from '../plugin/stores/redis.js'

/**
 * An app on a private Redis whose commands are counted with MONITOR. `during(fn)` runs fn and
 * returns the round trips it caused, split into the plugin's and the session store's
 * (commands a script runs show up with source 'lua': they are not round trips).
 */
async function monitored (t: Test, opts: BuildOptions = {}): Promise<Built & { during: (fn: () => Promise<void>) => Promise<{ plugin: string[][]; sessions: string[][] }> }> {
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
  const settled = (): Promise<void> => new Promise((resolve) => {
    const mark = `monitored-${++marks}`
    waiting.set(mark, resolve)
    void redis.echo(mark)
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

t.test('R3 the gate reads along with the session: no command of its own, one script per protected request (counted with MONITOR)', async (t) => {
  const { app, keyPrefix, during } = await monitored(t)
  const { agent } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const unverified = new Agent(app)
  await unverified.login('alice')
  // each session's first gated request reads apart and names the session's user (see TotpSessionState)
  const first = await during(async () => {
    t.equal((await bob.get('/api/profile')).statusCode, 200)
    t.equal((await unverified.get('/api/profile')).statusCode, 401)
  })
  t.equal(first.plugin.length, 2, 'a session that names no user yet: the gate reads apart, once')

  const N = 10
  const { plugin, sessions } = await during(async () => {
    for (let i = 0; i < N; i++) {
      t.equal((await agent.get('/api/profile')).statusCode, 200)
      t.equal((await bob.get('/api/profile')).statusCode, 200)
      t.equal((await unverified.get('/api/profile')).statusCode, 401)
    }
  })
  t.same(plugin, [], 'no plugin command at all')
  const reads = sessions.filter((args) => /^evalsha$/i.test(args[0]))
  t.equal(reads.length, 3 * N, 'one session read per request, a script (the session and its user\'s state)')
  t.equal(sessions.filter((args) => /^get$/i.test(args[0])).length, 0, 'no plain GET of a session')
  t.ok(sessions.every((args) => !args.some((a) => a.startsWith(keyPrefix) && !a.startsWith(`${keyPrefix}sess:`))), 'nor any user key named on the wire')
})

t.test('R3 without a linked session store the gate costs one Redis command per protected request', async (t) => {
  // sessions in memory: nothing to read along with
  const { app, during } = await monitored(t, { sessions: 'memory' })
  const { agent } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const N = 10
  const { plugin } = await during(async () => {
    for (let i = 0; i < N; i++) {
      t.equal((await agent.get('/api/profile')).statusCode, 200)
      t.equal((await bob.get('/api/profile')).statusCode, 200)
    }
  })
  t.equal(plugin.length, 2 * N, `one plugin command per request (${plugin.length} for ${2 * N} requests)`)
  t.ok(plugin.every((args) => args[0].toLowerCase() === 'evalsha'), 'each is the gate script')
})

t.test('R3 a client with a keyPrefix is not linked (ioredis prefixes KEYS, not the names in a header): the gate reads its own state', async (t) => {
  await awayFromStepEdge()
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { keyPrefix: 'kp:' })
  t.teardown(() => redis.disconnect())
  const { app } = await build(t, { redis })
  await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  for (let i = 0; i < 3; i++) t.equal((await agent.get('/api/profile')).statusCode, 401, 'an enrolled user\'s unverified session is refused')
  const plain = new Redis(server.url)
  t.teardown(() => plain.disconnect())
  const sessions = await plain.keys('kp:*sess:*')
  t.ok(sessions.length > 0, 'the sessions live under the client\'s prefix')
  t.ok((await Promise.all(sessions.map((k) => plain.get(k)))).every((v) => v?.startsWith('{')), 'and carry no read-along header')
})

t.test('S3/S4 a code check: read along, one plugin command (consume, or charge, with the IP\'s budget); read apart, two', async (t) => {
  const { app, keyPrefix, during } = await monitored(t)
  const { secret } = await enrol(app, 'alice')
  const ipKey = `${keyPrefix}ip:127.0.0.1`
  const verify = (agent: Agent, code: string, status: number) => during(async () => {
    t.equal((await agent.post('/totp/verify', { code })).statusCode, status)
  })

  // straight after sign-in: the session names no user yet, the gate's script reads apart
  const direct = new Agent(app)
  await direct.login('alice')
  const wrong = (await verify(direct, wrongCode(secret), 401)).plugin
  t.equal(wrong.length, 2, 'a wrong code: the gate\'s read (user, settings, pending, IP) and one charge of user and IP')
  t.ok(wrong.every((args) => args.includes(ipKey)), 'both touch the IP\'s counter')

  // the wrong code's answer saved the session naming its user: from now on the session read brings the state
  const along = (await verify(direct, wrongCode(secret), 401)).plugin
  t.equal(along.length, 1, 'read along: a wrong code is one command, the charge')
  t.ok(along[0].includes(ipKey), 'which checks and charges the IP\'s budget')
  const right = (await verify(direct, codeFor(secret), 200))
  t.equal(right.plugin.length, 1, 'read along: a valid code is one command, the consume')
  t.ok(right.plugin[0].includes(ipKey), 'which checks the IP\'s budget')
  t.ok([...wrong, ...along, ...right.plugin].every((args) => /^eval(sha)?$/i.test(args[0])), 'all scripts (EVAL the first time on a connection)')
  const writes = right.sessions.filter((args) => /^set$/i.test(args[0]))
  t.equal(writes.length, 1, 'S5: the new session is written once (regenerate), not again on send')
  t.equal(right.sessions.filter((args) => /^del$/i.test(args[0])).length, 1, 'and the old one deleted')
})

t.test('R4 the read-along header follows the session\'s user: kept while it names the same one, rewritten on verification and when the app signs in another user', async (t) => {
  const { app, redis, keyPrefix } = await monitored(t)
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  const stored = async (): Promise<string> => (await (redis as Redis).get(sessionKey(agent, keyPrefix))) as string
  const header = async (): Promise<string> => (await stored()).split('\n')[0]
  const named = (mode: string, user: string): RegExp => new RegExp(`^!${mode}\\t${keyPrefix}\\{default:\\d+\\}u:${user}\\t`)

  t.equal((await agent.get('/api/profile')).statusCode, 401)
  const pending = await header()
  t.match(pending, named('c', 'alice'), 'unverified: a code check may come next (mode c)')
  t.equal((await agent.get('/api/profile')).statusCode, 401)
  t.equal(await header(), pending, 'the same line again')

  t.equal((await agent.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  const verified = await header()
  t.match(verified, named('g', 'alice'), 'verified: the gate\'s fields only (mode g)')
  t.equal((await agent.get('/api/profile')).statusCode, 200)
  t.equal(await header(), verified)

  await agent.login('bob')
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'bob has no TOTP')
  t.match(await header(), named('g', 'bob'), 'the session now names bob')
  t.equal((await agent.get('/api/profile')).json().user, 'bob')
})

t.test('R3 a key prefix holding a tab or a newline is never named in a read-along header (the gate reads apart)', async (t) => {
  const mark = { t: 'default', u: 'a\tb\nc' }
  const keys = new KeyLayout('totp:', 64)
  const tag = `totp:{default:${keys.shardOf(mark.u)}}`
  t.equal(readAlongHeader(keys, mark), `!g\t${tag}u:a%09b%0Ac\t${tag}t\t${tag}p:a%09b%0Ac\n`, 'ids are encoded')
  for (const prefix of ['to\ttp:', 'to\ntp:']) {
    t.equal(new KeyLayout(prefix, 64).readAlongNames({ tenant: 'default', userId: 'alice' }), null)
    t.equal(readAlongHeader(new KeyLayout(prefix, 64), mark), '')
  }
  t.equal(readAlongHeader(keys, { t: 'default' } as never), '', 'a mark that names no user')
})

t.test('R5 a stored header that names the right user but other settings or pending keys is not trusted: the gate reads apart', async (t) => {
  const { app, redis, keyPrefix, during } = await monitored(t)
  const agent = new Agent(app)
  await agent.login('bob')
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'bob has no TOTP and nothing is enforced')
  const key = sessionKey(agent, keyPrefix)
  const stored = (await (redis as Redis).get(key)) as string
  const [header, json] = [stored.slice(0, stored.indexOf('\n') + 1), stored.slice(stored.indexOf('\n') + 1)]
  const [mode, user, settings, pending] = header.slice(1, -1).split('\t')
  // the tenant enforces TOTP on all users (every shard's copy), then the header is tampered with
  await app.totp.setSettings({ enforceAll: true }, { tenant: 'default', actorId: 'admin' })
  for (const [what, line] of [['settings', `!${mode}\t${user}\t${settings}-elsewhere\t${pending}\n`], ['pending', `!${mode}\t${user}\t${settings}\t${pending}x\n`]]) {
    await (redis as Redis).set(key, line + json)
    const { plugin } = await during(async () => {
      t.equal((await agent.get('/api/profile')).statusCode, 403, `${what} key not bob's: enforcement applies`)
    })
    t.equal(plugin.length, 1, `${what}: the gate read apart`)
    t.equal(((await (redis as Redis).get(key)) as string).split('\n')[0] + '\n', header, `${what}: the next save writes bob's own header again`)
  }
})

t.test('R3 a session stored with a header but no totp mark (the app dropped it) is read apart, and named again', async (t) => {
  const { app, redis, keyPrefix, during } = await monitored(t)
  const agent = new Agent(app)
  await agent.login('bob')
  t.equal((await agent.get('/api/profile')).statusCode, 200)
  const key = sessionKey(agent, keyPrefix)
  const stored = (await (redis as Redis).get(key)) as string
  const nl = stored.indexOf('\n')
  const session = JSON.parse(stored.slice(nl + 1)) as Record<string, unknown>
  delete session.totp
  await (redis as Redis).set(key, stored.slice(0, nl + 1) + JSON.stringify(session))
  const { plugin } = await during(async () => {
    t.equal((await agent.get('/api/profile')).statusCode, 200)
  })
  t.equal(plugin.length, 1, 'nothing to hand over: the gate read apart')
  t.match(JSON.parse(((await (redis as Redis).get(key)) as string).split('\n')[1]), { totp: { t: 'default', u: 'bob' } }, 'the session names bob again')
})

t.test('R3 read-along names are remembered by tenant and user id apart (no joined key two pairs could share), and rebuilt past the bound', async (t) => {
  const keys = new KeyLayout('totp:', 64)
  const names = (ref: { tenant: string, userId: string }): string => `${keys.user(ref)}\t${keys.settingsFor(ref)}\t${keys.pending(ref)}`
  const a = { tenant: 'a\nb', userId: 'c' }
  const b = { tenant: 'a', userId: 'b\nc' }
  t.equal(keys.readAlongNames(a), names(a))
  t.equal(keys.readAlongNames(b), names(b), 'the pair that a joined key would confuse with the first')
  t.equal(keys.readAlongNames(a), names(a), 'remembered')
  let wrong = 0
  for (let i = 0; i < 10_050; i++) {
    const ref = { tenant: `t${i % 7}`, userId: `u${i}` }
    if (keys.readAlongNames(ref) !== names(ref)) wrong++
  }
  t.equal(wrong, 0, 'more users than remembered: each still gets its own names')
  t.equal(keys.readAlongNames(b), names(b), 'forgotten past the bound, then built again')
})

t.test('R3 what a session was read along with stays out of its JSON and out of a log of it (mode c holds a sealed secret)', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true })
  t.teardown(() => redis.disconnect())
  const store = new RedisTotpStore({ client: redis, lock: { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000 }, ip: null })
  const reader = store.sessionReader()
  if (reader === null) throw new Error('a standalone client without keyPrefix reads along')
  const mark = { t: 'default', u: 'alice', p: 1 as const }
  const session = { uid: 'alice', totp: mark }
  const header = readAlongHeader(store.keys, mark)
  reader.attach(session as never, '1\t0\t1\t0\t0\tSEALED-SECRET\t\t5\t0', header)
  t.equal(JSON.stringify(session), '{"uid":"alice","totp":{"t":"default","u":"alice","p":1}}')
  t.notMatch(inspect(session, { showHidden: true, depth: 10 }), /SEALED-SECRET/)
  t.match(store.readAlong({ tenant: 'default', userId: 'alice' }, session, true), { gate: { enabled: true, gen: 1 }, secret: { sealed: 'SEALED-SECRET', lastStep: 5 } }, 'the gate still reads it')
  t.equal(store.readAlong({ tenant: 'other', userId: 'alice' }, session, true), null, 'for the user its header names only')
  reader.attach(session as never, '1\t0', header)
  t.equal(store.readAlong({ tenant: 'default', userId: 'alice' }, session, false), null, 'fields of another shape are no gate state: read apart')
})
