import { Ajv } from 'ajv'
import type { FastifyError, FastifyInstance } from 'fastify'
import { TotpBadRequestError, TotpCrossSiteError } from '../errors.js'

/** Largest body the plugin's routes read; bigger ones answer 413. */
export const BODY_LIMIT = 1024

// S7: no type coercion (Fastify's default turns the number 123456 into "123456"),
// no defaults, no extra properties.
const ajv = new Ajv({ coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false })

export const codeBody = (digits: number, trustDevice = false) => ({
  type: 'object',
  additionalProperties: false,
  required: ['code'],
  properties: {
    code: { type: 'string', pattern: `^[0-9]{${digits}}$` },
    ...(trustDevice ? { trustDevice: { type: 'boolean' } } : {})
  }
})

/** A recovery code as typed: the route forgives case, spaces and dashes, then checks the shape. */
export const recoveryBody = {
  type: 'object',
  additionalProperties: false,
  required: ['code'],
  properties: { code: { type: 'string', minLength: 1, maxLength: 64 } }
}

export const userParams = {
  type: 'object',
  required: ['userId'],
  properties: { userId: { type: 'string', minLength: 1, maxLength: 256 } }
}

export const deviceParams = {
  type: 'object',
  required: ['deviceId'],
  properties: { deviceId: { type: 'string', pattern: '^[\\w-]{12}$' } }
}

export const enforcementBody = {
  type: 'object',
  additionalProperties: false,
  required: ['enforced'],
  properties: { enforced: { type: 'boolean' } }
}

/** Any of the settings; the others keep their values. */
export const settingsBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    enforceAll: { type: 'boolean' },
    enforceRoles: {
      type: 'array',
      maxItems: 100,
      uniqueItems: true,
      items: { type: 'string', minLength: 1, maxLength: 256, pattern: '^[^\\n]*$' }
    },
    gracePeriod: { type: 'integer', minimum: 0, maximum: 31_536_000 }
  }
}

/** Strict validation and FST_TOTP_BAD_REQUEST for anything malformed, in the plugin's own scope. */
export function strictInput (scope: FastifyInstance): void {
  scope.setValidatorCompiler(({ schema }) => ajv.compile(schema))
  // on send, not on request: the gate's hook (the app's scope) runs before any hook of this
  // scope, so a refusal of the gate (401, 403, 503) would otherwise go out without it
  scope.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('cache-control', 'no-store')
    done(null, payload)
  })
  scope.setErrorHandler((err: FastifyError, request, reply) => {
    const malformed = err.validation !== undefined ||
      (err.code?.startsWith('FST_ERR_CTP_') === true && err.statusCode !== 413) ||
      err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
    if (malformed) return reply.send(new TotpBadRequestError(err.message))
    if ((err.statusCode ?? 500) >= 500) request.log.error({ err }, 'fastify-totp error')
    return reply.send(err)
  })
}

const CHANGES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * The plugin's state-changing routes answer only same-site JSON calls: a cross-site form or a
 * `no-cors` fetch (no body, `text/plain`, form encodings) cannot start a setup or change
 * anything with the victim's cookie. `Sec-Fetch-Site: cross-site` is refused outright; POST and
 * PUT need `content-type: application/json` (an empty body is fine: it reads as `{}`).
 */
export function sameSiteJson (scope: FastifyInstance): void {
  const parseJson = scope.getDefaultJsonParser('error', 'error')
  scope.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, {})
    parseJson(request, body as string, done)
  })
  scope.addHook('onRequest', async (request) => {
    if (!CHANGES.has(request.method)) return
    if (request.headers['sec-fetch-site'] === 'cross-site') throw new TotpCrossSiteError()
    if (request.method !== 'POST' && request.method !== 'PUT' && request.method !== 'PATCH') return
    const type = request.headers['content-type']?.split(';')[0].trim().toLowerCase()
    if (type !== 'application/json') throw new TotpBadRequestError('send content-type: application/json')
  })
}
