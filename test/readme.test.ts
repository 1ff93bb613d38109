import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import t from 'tap'
import { Redis } from 'ioredis'
import { decodeSecret, generateCode } from '../plugin/totp/index.js'
import { deleteKeys, REDIS_URL } from './helpers.js'

const sample = readFileSync(new URL('./fixtures/register-sample.ts', import.meta.url), 'utf8')

t.test('README: the registration sample is the tested one, verbatim', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  t.ok(readme.includes(sample.trim()), 'README.md contains test/fixtures/register-sample.ts')
})

t.test('README: every "Works with" snippet is the tested one, verbatim', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const fixture = readFileSync(new URL('./fixtures/works-with.ts', import.meta.url), 'utf8')
  const regions = [...fixture.matchAll(/ {2}\/\/ README ([\w-]+)\n([\s\S]*?)\n {2}\/\/ README end/g)]
  t.ok(regions.length >= 5, `${regions.length} snippets`)
  for (const [, name, body] of regions) {
    const code = body.split('\n').map((l) => l.startsWith('  ') ? l.slice(2) : l).join('\n')
    t.ok(readme.includes(code), `README.md shows the ${name} snippet of test/fixtures/works-with.ts`)
  }
})

t.test('README: the registration sample works: sign in, enrol, gate, verify', async (t) => {
  // the sample imports the published name; point it at the source for the test
  const file = new URL('./fixtures/.register-sample.generated.ts', import.meta.url)
  writeFileSync(file, sample
    .replace("from 'fastify-totp-gate/session-store'", "from '../../plugin/session-store.js'")
    .replace("from 'fastify-totp-gate'", "from '../../plugin/index.js'"))
  // kept (git-ignored): tap's coverage report reads it after the run
  process.env.SESSION_SECRET = 'x'.repeat(32)
  process.env.TOTP_ENCRYPTION_KEY = randomBytes(32).toString('base64')
  const { buildApp } = await import(file.href)
  const redis = new Redis(REDIS_URL)
  const app = await buildApp(redis)
  const user = `readme-${randomBytes(4).toString('hex')}`
  t.teardown(async () => {
    await app.close()
    await deleteKeys(redis, `totp:{default:*}?:${user}`)
    for (const id of sessions) await redis.del(`sess:${id}`)
    redis.disconnect()
  })
  let cookie = ''
  const sessions = new Set<string>()
  const call = async (method: string, url: string, payload?: object) => {
    const res = await app.inject({ method, url, payload, headers: { cookie } })
    const c = res.cookies.find((x: { name: string }) => x.name === 'sessionId')
    if (c !== undefined) {
      cookie = `sessionId=${c.value}`
      sessions.add(decodeURIComponent(c.value).split('.')[0])
    }
    return res
  }
  await call('POST', '/login', { user })
  t.equal((await call('GET', '/api/data')).statusCode, 200, 'not enrolled, not enforced: passes')
  const { secret, uri } = (await call('POST', '/totp/setup', {})).json()
  t.match(uri, /^otpauth:\/\/totp\/Acme:/)
  t.equal((await call('POST', '/totp/setup/confirm', { code: generateCode(decodeSecret(secret), undefined, Date.now() / 1000 - 30) })).statusCode, 200)
  cookie = ''
  await call('POST', '/login', { user })
  t.equal((await call('GET', '/api/data')).json().code, 'FST_TOTP_REQUIRED')
  t.equal((await call('POST', '/totp/verify', { code: generateCode(decodeSecret(secret)) })).statusCode, 200)
  t.equal((await call('GET', '/api/data')).statusCode, 200)
})
