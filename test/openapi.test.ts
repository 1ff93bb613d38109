import fastifySwagger from '@fastify/swagger'
import t from 'tap'
import { Agent, build, enrol } from './helpers.js'

// The plugin's routes in an app's OpenAPI document (@fastify/swagger, registered before the plugin).

const GATE = [401, 500, 503]
/** Every plugin route (recoveryCodes, trustDevice and findUser on): its success and error answers. */
const ROUTES: Record<string, { ok: number; errors: number[] }> = {
  'get /totp/status': { ok: 200, errors: GATE },
  'post /totp/verify': { ok: 200, errors: [400, 403, 409, 413, 429, ...GATE] },
  'post /totp/recover': { ok: 200, errors: [400, 403, 409, 413, 429, ...GATE] },
  'post /totp/recovery-codes': { ok: 201, errors: [400, 403, 409, 413, ...GATE] },
  'get /totp/devices': { ok: 200, errors: [403, ...GATE] },
  'delete /totp/devices/{deviceId}': { ok: 204, errors: [400, 403, 404, 413, ...GATE] },
  'post /totp/setup': { ok: 201, errors: [400, 403, 409, 413, 429, ...GATE] },
  'post /totp/setup/confirm': { ok: 200, errors: [400, 403, 404, 409, 413, 429, ...GATE] },
  'get /totp/users/{userId}': { ok: 200, errors: [400, 403, 404, ...GATE] },
  'delete /totp/users/{userId}/secret': { ok: 204, errors: [400, 403, 404, 413, ...GATE] },
  'delete /totp/users/{userId}/lock': { ok: 204, errors: [400, 403, 404, 413, ...GATE] },
  'put /totp/users/{userId}/enforcement': { ok: 200, errors: [400, 403, 404, 413, ...GATE] },
  'get /totp/settings': { ok: 200, errors: [403, ...GATE] },
  'put /totp/settings': { ok: 200, errors: [400, 403, 409, 413, ...GATE] }
}

interface Operation {
  summary?: string
  tags?: string[]
  responses: Record<string, { description?: string; content?: Record<string, { schema: SchemaObject }> }>
}
interface SchemaObject { type?: string; properties?: Record<string, unknown>; items?: SchemaObject }

t.test('OpenAPI: every plugin route documents its answers (summary, tag, success and error statuses) for @fastify/swagger', async (t) => {
  const { app } = await build(t, {
    plugin: { recoveryCodes: true, trustDevice: true },
    preRegister: async (a) => {
      await a.register(fastifySwagger, { openapi: { openapi: '3.0.3', info: { title: 'app', version: '1.0.0' } } })
    }
  })
  const spec = app.swagger() as unknown as { paths: Record<string, Record<string, Operation>> }
  const documented = Object.entries(spec.paths)
    .filter(([path]) => path.startsWith('/totp/'))
    .flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`))
  t.same(documented.sort(), Object.keys(ROUTES).sort(), 'every plugin route is in the document, and only those')

  for (const [route, { ok, errors }] of Object.entries(ROUTES)) {
    const [method, path] = route.split(' ')
    const op = spec.paths[path][method]
    t.ok(typeof op.summary === 'string' && op.summary.length > 0, `${route}: a summary`)
    t.same(op.tags, ['totp'], `${route}: the totp tag`)
    t.same(Object.keys(op.responses).map(Number).sort(), [ok, ...errors].sort(), `${route}: ${ok} and ${errors.join(', ')}`)
    for (const [status, answer] of Object.entries(op.responses)) {
      t.ok(answer.description !== undefined && answer.description !== 'Default Response', `${route} ${status}: described`)
      const schema = answer.content?.['application/json']?.schema
      if (Number(status) === 204) t.equal(schema, undefined, `${route} 204: no body`)
      else if (Number(status) >= 400) {
        t.same(Object.keys(schema?.properties ?? {}).sort(), ['code', 'error', 'message', 'statusCode'], `${route} ${status}: Fastify's error shape`)
      } else t.equal(schema?.type, 'object', `${route} ${status}: a JSON object`)
    }
  }

  // the success schemas list every property the handlers answer (serialization drops the others)
  const props = (route: string, status: number): string[] => {
    const [method, path] = route.split(' ')
    return Object.keys(spec.paths[path][method].responses[status].content?.['application/json'].schema.properties ?? {}).sort()
  }
  t.same(props('get /totp/status', 200), ['enabled', 'enforced', 'locked', 'lockedUntil', 'recoveryCodesLeft', 'setupDeadline', 'setupRequired', 'verified'])
  t.same(props('post /totp/verify', 200), ['deviceId', 'verified'])
  t.same(props('post /totp/setup', 201), ['expiresAt', 'qr', 'secret', 'uri'])
  t.same(props('post /totp/setup/confirm', 200), ['enabled', 'recoveryCodes', 'verified'])
  t.same(props('get /totp/users/{userId}', 200), ['enabled', 'enforced', 'locked', 'lockedUntil', 'recoveryCodesLeft', 'setupDeadline', 'setupRequired', 'userId'])
  t.same(props('get /totp/settings', 200), ['enforceAll', 'enforceRoles', 'gracePeriod'])
  t.same(props('get /totp/devices', 200), ['devices'])
})

t.test('OpenAPI: the answers keep every property through the response schemas (status, devices, admin status, errors)', async (t) => {
  const { app } = await build(t, { plugin: { recoveryCodes: true, trustDevice: true } })
  const anonymous = await new Agent(app).get('/totp/status')
  t.same(Object.keys(anonymous.json()).sort(), ['code', 'error', 'message', 'statusCode'], 'an error keeps its four fields')
  t.equal(anonymous.json().code, 'FST_TOTP_UNAUTHENTICATED')

  const { agent } = await enrol(app, 'alice')
  const status = (await agent.get('/totp/status')).json()
  t.same(status, {
    enabled: true,
    enforced: false,
    verified: true,
    setupRequired: false,
    setupDeadline: null,
    locked: false,
    lockedUntil: null,
    recoveryCodesLeft: 10
  })
  const devices = (await agent.get('/totp/devices')).json()
  t.same(devices, { devices: [] })

  const { agent: admin } = await enrol(app, 'admin')
  t.same((await admin.get('/totp/users/alice')).json(), {
    userId: 'alice',
    enabled: true,
    enforced: false,
    setupRequired: false,
    setupDeadline: null,
    locked: false,
    lockedUntil: null,
    recoveryCodesLeft: 10
  })
  t.same((await admin.put('/totp/settings', { gracePeriod: 60 })).json(), { enforceAll: false, enforceRoles: [], gracePeriod: 60 })
})
