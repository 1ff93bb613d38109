// The package as an app installs it: `npm pack`'s tarball, unpacked into a consumer's
// node_modules next to the app's own fastify, @fastify/* and ioredis (this checkout's); and
// installed with `npm install` from the registry beside ioredis 5 and 6, then used against Redis.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { LAYOUT_REGISTRY } from '../plugin/stores/layout.js'
import { REDIS_URL } from './helpers.js'

// npm pack builds dist/ (prepack), and each registry install may download: more than .taprc's 120 s
t.setTimeout(420_000)

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  version: string
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
  devDependencies: Record<string, string>
}
const PEERS = ['fastify', '@fastify/cookie', '@fastify/session', 'ioredis']

// `npm pack` once for the file (prepack builds dist/ first: npm run build)
const packDir = mkdtempSync(join(tmpdir(), 'fastify-totp-gate-pack-'))
t.teardown(() => rmSync(packDir, { recursive: true, force: true }))
let packed: { tarball: string, files: string[] } | undefined
function pack (): { tarball: string, files: string[] } {
  if (packed === undefined) {
    const [out] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', packDir], {
      cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 180_000
    })) as Array<{ filename: string, files: Array<{ path: string }> }>
    packed = { tarball: join(packDir, out.filename), files: out.files.map((f) => f.path) }
  }
  return packed
}

t.test('package: fastify, @fastify/cookie, @fastify/session and ioredis are peers (one copy: the app\'s), installed for development', async (t) => {
  for (const name of PEERS) {
    t.ok(pkg.peerDependencies[name], `${name} is a peer dependency`)
    t.notOk(pkg.dependencies[name], `${name} is not a dependency (npm would install a second copy)`)
    t.ok(pkg.devDependencies[name], `${name} is installed for the tests and the example`)
  }
})

t.test('package: the packed tarball imports, finds its Lua scripts and type-checks in a consumer (nodenext and bundler)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-totp-gate-consumer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { tarball, files } = pack()
  t.ok(files.includes('dist/plugin/index.d.ts'), 'declarations are packed')
  t.ok(files.includes('dist/plugin/stores/lua/attempt.lua'), 'the Lua scripts are packed')
  t.notOk(files.some((f) => f.startsWith('plugin/') || f.startsWith('test/')), 'no sources or tests')

  // node_modules: the package unpacked, everything else linked to this checkout's copies
  const modules = join(dir, 'node_modules')
  mkdirSync(join(modules, pkg.name), { recursive: true })
  execFileSync('tar', ['xzf', tarball, '-C', join(modules, pkg.name), '--strip-components=1'])
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || entry === pkg.name) continue
    if (entry.startsWith('@')) {
      mkdirSync(join(modules, entry), { recursive: true })
      for (const scoped of readdirSync(join(root, 'node_modules', entry))) symlinkSync(join(root, 'node_modules', entry, scoped), join(modules, entry, scoped))
    } else symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))

  const run = `
    import Fastify from 'fastify'
    import totp, { createKeyRing, RedisTotpStore, TotpRequiredError } from '${pkg.name}'
    import { RedisSessionStore } from '${pkg.name}/session-store'
    const app = Fastify()
    await app.register((await import('@fastify/cookie')).default)
    await app.register((await import('@fastify/session')).default, { secret: 'x'.repeat(32), cookie: { secure: false } })
    await app.register(totp, { getUser: () => null })
    const res = await app.inject({ method: 'GET', url: '/totp/status' })
    console.log(JSON.stringify({ status: res.statusCode, code: res.json().code, error: new TotpRequiredError().code,
      store: typeof RedisSessionStore, redisStore: typeof RedisTotpStore, ring: typeof createKeyRing }))
    await app.close()`
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', run], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop() as string)
  t.same(out, { status: 401, code: 'FST_TOTP_UNAUTHENTICATED', error: 'FST_TOTP_REQUIRED', store: 'function', redisStore: 'function', ring: 'function' }, 'imported from the tarball, the scripts loaded')

  writeFileSync(join(dir, 'app.ts'), `
    import Fastify from 'fastify'
    import fastifyCookie from '@fastify/cookie'
    import fastifySession from '@fastify/session'
    import { Redis } from 'ioredis'
    import totp, { TotpRequiredError, type TotpUser } from '${pkg.name}'
    import { RedisSessionStore } from '${pkg.name}/session-store'
    export async function build (redis: Redis) {
      const app = Fastify()
      await app.register(fastifyCookie)
      await app.register(fastifySession, { secret: 'x'.repeat(32), store: new RedisSessionStore({ client: redis }) })
      await app.register(totp, { redis, encryptionKey: 'k', getUser: (request): TotpUser | null => null })
      app.get('/open', { config: { totp: false } }, async () => 'ok')
      app.get('/data', { config: { totp: { allowUnverified: true } } }, async (request) => {
        const verified: boolean | undefined = request.totp?.verified
        const gen: number | undefined = request.session.totp?.g
        return { verified, gen, status: await app.totp.status('alice') }
      })
      const code: 'FST_TOTP_REQUIRED' = new TotpRequiredError().code
      // @ts-expect-error the errors are typed (an untyped error would accept any property)
      void new TotpRequiredError().noSuchProperty
      return { app, code }
    }
  `)
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  for (const [module, resolution] of [['nodenext', 'nodenext'], ['esnext', 'bundler']]) {
    let output = ''
    try {
      execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--target', 'es2022', '--module', module, '--moduleResolution', resolution, 'app.ts'], { cwd: dir, encoding: 'utf8' })
    } catch (err) {
      output = String((err as { stdout?: string }).stdout ?? err)
    }
    t.equal(output, '', `tsc --module ${module} --moduleResolution ${resolution}: no errors`)
  }
})

// A consumer as `npm install` lays it out, from the registry: the tarball, a peer set an app on
// ioredis 5 (or 6) has, and nothing of this checkout's node_modules.
const consumerApp = (name: string): string => `
  import Fastify from 'fastify'
  import fastifyCookie from '@fastify/cookie'
  import fastifySession from '@fastify/session'
  import { Redis } from 'ioredis'
  import totp from '${name}'
  import { RedisSessionStore } from '${name}/session-store'
  import { generateCode, nextCode } from '${name}/testing'

  const keyPrefix = process.env.KEY_PREFIX
  const redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 })
  const app = Fastify()
  const out = {}
  try {
    await app.register(fastifyCookie)
    await app.register(fastifySession, {
      secret: 'a-consumer-session-secret-of-32-chars!!',
      cookie: { secure: false },
      saveUninitialized: false,
      store: new RedisSessionStore({ client: redis, prefix: keyPrefix + 'sess:' })
    })
    await app.register(totp, {
      redis,
      encryptionKey: Buffer.alloc(32, 7),
      keyPrefix,
      allowNewKeyPrefix: true,
      getUser: (request) => {
        const id = request.session.get('userId')
        return id === undefined ? null : { id, roles: [] }
      }
    })
    app.post('/login', { config: { totp: false } }, async (request) => {
      await request.session.regenerate()
      request.session.set('userId', request.body.user)
      return { ok: true }
    })
    app.get('/api/data', async () => ({ secret: 'data' }))

    // a browser: keeps the session cookie
    const browser = () => {
      let cookie
      return async (method, url, payload) => {
        // a POST carries JSON (the plugin refuses a body-less POST: no form can send JSON across sites)
        const res = await app.inject({ method, url, payload: method === 'POST' ? payload ?? {} : undefined, cookies: cookie === undefined ? {} : { sessionId: cookie } })
        const set = res.cookies.find((c) => c.name === 'sessionId')
        if (set !== undefined) cookie = set.value
        return { status: res.statusCode, body: res.json() }
      }
    }
    const first = browser()
    await first('POST', '/login', { user: 'alice' })
    const setup = await first('POST', '/totp/setup')
    out.setup = { status: setup.status, secret: /^[A-Z2-7]{32}$/.test(setup.body.secret) ? true : setup.body }
    const secret = setup.body.secret
    out.confirm = await first('POST', '/totp/setup/confirm', { code: generateCode(secret, { at: Date.now(), steps: 0 }) })
    out.enrolled = await first('GET', '/api/data')

    const second = browser()
    await second('POST', '/login', { user: 'alice' })
    const gated = await second('GET', '/api/data')
    out.gated = { status: gated.status, code: gated.body.code }
    // the confirming code was used once: the next step's code (inside the window) verifies
    out.verify = await second('POST', '/totp/verify', { code: nextCode(secret) })
    out.after = await second('GET', '/api/data')
  } finally {
    await app.close()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', keyPrefix + '*', 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
    await redis.hdel(process.env.LAYOUT_REGISTRY, keyPrefix)
    out.leftKeys = (await redis.keys(keyPrefix + '*')).length
    redis.disconnect()
  }
  console.log(JSON.stringify(out))
`

t.test('package: `npm install` of the packed tarball beside ioredis 5 and 6 (fastify 5, @fastify/cookie 11, @fastify/session 11) resolves without --legacy-peer-deps; setup, confirm, gate and verify work', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'fastify-totp-gate-install-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const { tarball } = pack()
  // the parent npm's settings (npm test sets npm_config_*) are not the app's
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)))

  for (const major of ['5', '6']) {
    t.test(`ioredis ${major}`, async (t) => {
      const dir = join(work, `consumer-ioredis-${major}`)
      mkdirSync(dir)
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-ioredis-${major}`, private: true, type: 'module' }))
      let install: { status: number | string, output: string }
      try {
        const output = execFileSync('npm', [
          'install', '--no-audit', '--no-fund', '--legacy-peer-deps=false', '--force=false',
          tarball, 'fastify@5', '@fastify/cookie@11', '@fastify/session@11', `ioredis@${major}`
        ], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 })
        install = { status: 0, output }
      } catch (err) {
        const e = err as { status?: number | null, signal?: string | null, stdout?: string, stderr?: string }
        install = { status: e.status ?? e.signal ?? 'failed', output: `${e.stdout ?? ''}${e.stderr ?? ''}` }
      }
      t.equal(install.status, 0, `npm install succeeds without --legacy-peer-deps${install.status === 0 ? '' : `:\n${install.output}`}`)
      if (install.status !== 0) return
      t.notMatch(install.output, /ERESOLVE/, 'no peer conflict, not even one npm overrides with a warning')
      const manifest = (name: string): { version: string } =>
        JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
      t.match(manifest('ioredis').version, new RegExp(`^${major}\\.`), `the app's ioredis is ${major}.x`)
      t.equal(manifest(pkg.name).version, pkg.version, 'the tarball is installed')
      for (const peer of PEERS) t.notOk(existsSync(join(dir, 'node_modules', pkg.name, 'node_modules', peer)), `one ${peer}: the app's`)

      writeFileSync(join(dir, 'app.mjs'), consumerApp(pkg.name))
      const keyPrefix = `t:pkg${major}:${randomBytes(6).toString('hex')}:`
      const out = JSON.parse(execFileSync(process.execPath, ['app.mjs'], {
        cwd: dir,
        env: { ...env, KEY_PREFIX: keyPrefix, REDIS_URL, LAYOUT_REGISTRY },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000
      }).trim().split('\n').pop() as string)
      t.same(out, {
        setup: { status: 201, secret: true },
        confirm: { status: 200, body: { enabled: true, verified: true } },
        enrolled: { status: 200, body: { secret: 'data' } },
        gated: { status: 401, code: 'FST_TOTP_REQUIRED' },
        verify: { status: 200, body: { verified: true } },
        after: { status: 200, body: { secret: 'data' } },
        leftKeys: 0
      }, `enrolled, gated and verified on ioredis ${manifest('ioredis').version}; its keys removed`)
    })
  }
})

t.test('package: a name of its own (the npm registry answers 404 for it: not an unrelated package), with repository, homepage, bugs, keywords and a CHANGELOG', async (t) => {
  const meta = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>
  t.equal(meta.name, 'fastify-totp-gate')
  for (const field of ['repository', 'homepage', 'bugs', 'keywords']) t.ok(meta[field], `${field} is set`)
  t.ok(readFileSync(join(root, 'CHANGELOG.md'), 'utf8').includes('## [Unreleased]'), 'a CHANGELOG')
  let out = ''
  try {
    out = execFileSync('npm', ['view', String(meta.name), 'name', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '')
  }
  t.match(out, /E404|404 Not Found/, `npm view ${String(meta.name)}: not published by anyone else`)
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  t.notMatch(readme, /from 'fastify-totp'|from 'fastify-totp\//, 'the README imports the package by its name')
})
