import t from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'

const BAD_BODIES: Array<[string, string | undefined, Record<string, string>?]> = [
  ['5 digits', JSON.stringify({ code: '12345' })],
  ['7 digits', JSON.stringify({ code: '1234567' })],
  ['letters', JSON.stringify({ code: 'abcdef' })],
  ['Arabic-Indic digits', JSON.stringify({ code: '١٢٣٤٥٦' })],
  ['fullwidth digits', JSON.stringify({ code: '１２３４５６' })],
  ['a number', JSON.stringify({ code: 123456 })],
  ['null', JSON.stringify({ code: null })],
  ['an array', JSON.stringify({ code: ['123456'] })],
  ['a tab', JSON.stringify({ code: '123\t456' })],
  ['a dash', JSON.stringify({ code: '123-456' })],
  ['spaces but 7 digits', JSON.stringify({ code: '123 4567' })],
  ['an extra property', JSON.stringify({ code: '123456', admin: true })],
  ['__proto__', '{"code":"123456","__proto__":{"x":1}}'],
  ['no body', undefined],
  ['broken JSON', '{"code":'],
  ['a JSON string', '"123456"'],
  ['text/plain', 'code=123456', { 'content-type': 'text/plain' }]
]

t.test('S7 bad bodies get 400 FST_TOTP_BAD_REQUEST and change nothing', async (t) => {
  await awayFromStepEdge(8000)
  const { app, events } = await build(t, { plugin: { lockout: { freeFailures: 1 } } })
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  const carol = new Agent(app)
  await carol.login('carol')
  const pending = (await carol.post('/totp/setup')).json().secret
  const before = events.length
  for (const [route, agent] of [['/totp/verify', a], ['/totp/setup/confirm', carol]] as const) {
    for (const [name, payload, headers] of BAD_BODIES) {
      const res = await agent.request('POST', route, payload, { 'content-type': 'application/json', ...headers })
      t.equal(res.statusCode, 400, `${route} ${name}`)
      t.equal(res.json().code, 'FST_TOTP_BAD_REQUEST', `${route} ${name}`)
    }
    const huge = await agent.request('POST', route, JSON.stringify({ code: 'x'.repeat(1024 * 1024) }), { 'content-type': 'application/json' })
    t.equal(huge.statusCode, 413, `${route} 1 MB body`)
    const over = await agent.request('POST', route, JSON.stringify({ code: 'x'.repeat(1024) }), { 'content-type': 'application/json' })
    t.equal(over.statusCode, 413, `${route} just over 1 KiB`)
    t.equal(over.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE', `${route} just over 1 KiB`)
  }
  t.equal(events.length, before, 'no failure was charged (one would lock)')
  t.equal((await a.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'the right code still works')
  t.equal((await carol.post('/totp/setup/confirm', { code: codeFor(pending) })).statusCode, 200, 'the pending setup is intact')
})

t.test('S7 bad admin input gets 400', async (t) => {
  const { app } = await build(t)
  const admin = new Agent(app)
  await admin.login('admin')
  for (const body of [{ enforced: 'yes' }, { enforced: 1 }, {}, { enforced: true, x: 1 }]) {
    const res = await admin.put('/totp/users/alice/enforcement', body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'FST_TOTP_BAD_REQUEST')
  }
  t.equal((await admin.put('/totp/settings', { enforceAll: 'true' })).statusCode, 400)
  // Fastify's router refuses a path parameter over its maxParamLength (100 by default) first
  const long = await admin.get(`/totp/users/${'a'.repeat(101)}`)
  t.equal(long.statusCode, 414, 'a user id over the router\'s 100 characters')
  t.equal(long.json().code, 'FST_ERR_MAX_PARAM_LENGTH')
  t.equal((await admin.get('/totp/users/alice')).json().enforced, false, 'nothing changed')
})

t.test('S7 a code with spaces, as apps display it ("123 456"), is accepted', async (t) => {
  await awayFromStepEdge(5000)
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  const code = codeFor(secret)
  t.equal((await a.post('/totp/verify', { code: ` ${code.slice(0, 3)} ${code.slice(3)} ` })).statusCode, 200)
})
