// The package as an app installs it: `npm pack`'s tarball, unpacked into a consumer's
// node_modules next to the app's own fastify, @fastify/* and ioredis (this checkout's).
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
  devDependencies: Record<string, string>
}
const PEERS = ['fastify', '@fastify/cookie', '@fastify/session', 'ioredis']

t.test('package: fastify, @fastify/cookie, @fastify/session and ioredis are peers (one copy: the app\'s), installed for development', async (t) => {
  for (const name of PEERS) {
    t.ok(pkg.peerDependencies[name], `${name} is a peer dependency`)
    t.notOk(pkg.dependencies[name], `${name} is not a dependency (npm would install a second copy)`)
    t.ok(pkg.devDependencies[name], `${name} is installed for the tests and the example`)
  }
})

t.test('package: the packed tarball imports, finds its Lua scripts and type-checks in a consumer (nodenext and bundler)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-totp-consumer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // prepack builds dist/ first (npm run build)
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{ filename: string, files: Array<{ path: string }> }>
  const files = packed[0].files.map((f) => f.path)
  t.ok(files.includes('dist/plugin/index.d.ts'), 'declarations are packed')
  t.ok(files.includes('dist/plugin/stores/lua/attempt.lua'), 'the Lua scripts are packed')
  t.notOk(files.some((f) => f.startsWith('plugin/') || f.startsWith('test/')), 'no sources or tests')

  // node_modules: the package unpacked, everything else linked to this checkout's copies
  const modules = join(dir, 'node_modules')
  mkdirSync(join(modules, 'fastify-totp'), { recursive: true })
  execFileSync('tar', ['xzf', join(dir, packed[0].filename), '-C', join(modules, 'fastify-totp'), '--strip-components=1'])
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || entry === 'fastify-totp') continue
    if (entry.startsWith('@')) {
      mkdirSync(join(modules, entry))
      for (const scoped of readdirSync(join(root, 'node_modules', entry))) symlinkSync(join(root, 'node_modules', entry, scoped), join(modules, entry, scoped))
    } else symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))

  const run = `
    import Fastify from 'fastify'
    import totp, { createKeyRing, RedisTotpStore, TotpRequiredError } from 'fastify-totp'
    import { RedisSessionStore } from 'fastify-totp/session-store'
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
    import totp, { TotpRequiredError, type TotpUser } from 'fastify-totp'
    import { RedisSessionStore } from 'fastify-totp/session-store'
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
