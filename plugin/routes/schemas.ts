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
    // digits as a string; spaces (`123 456`, as apps display codes) are forgiven
    code: { type: 'string', maxLength: 32, pattern: `^ *(?:[0-9] *){${digits}}$` },
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

// Answers. Fastify serializes each with its response schema (fast-json-stringify), which drops
// every property the schema does not list: a success schema lists all its handler returns.
// @fastify/swagger documents them (summary, tag, every status a route can answer).

/** Fastify's error shape, shared by every error answer of the plugin's routes. */
export const errorSchema = {
  type: 'object',
  // `code` is left out: an unexpected error (500) may have none
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string', description: 'FST_TOTP_… (the README\'s error table), or Fastify\'s FST_ERR_…' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
} as const

/** What each error status means on the plugin's routes, unless a route says more. */
const ERROR_ANSWERS: Record<number, string> = {
  400: 'FST_TOTP_BAD_REQUEST: malformed input (schema, JSON, media type, length); nothing changes',
  401: 'FST_TOTP_UNAUTHENTICATED (nobody is signed in) or FST_TOTP_REQUIRED (this session has not verified a code)',
  403: 'FST_TOTP_SETUP_REQUIRED (TOTP enforced, no active secret), FST_TOTP_FORBIDDEN or FST_TOTP_CROSS_SITE',
  404: 'Not found',
  409: 'Conflict with the user\'s TOTP state',
  413: 'The body is over the route\'s limit',
  429: 'FST_TOTP_LOCKED: too many wrong codes; Retry-After (s), none when locked until unlocked',
  500: 'FST_TOTP_BAD_USER: getUser answered a user without a usable id or tenant',
  503: 'FST_TOTP_UNAVAILABLE: Redis down or slower than `timeout`, or a secret that does not open'
}

/** The error answers `statuses`, each in the shared shape; `own` describes a route's own meaning. */
export function errorAnswers (statuses: number[], own: Record<number, string> = {}): Record<number, object> {
  return Object.fromEntries(statuses.map((s) => [s, { ...errorSchema, description: own[s] ?? ERROR_ANSWERS[s] }]))
}

/** A 204 answer: no body. */
export const noContent = (description: string) => ({ type: 'null', description })

/** The documentation part of a route's schema: summary, the `totp` tag and its answers. */
export function documented (summary: string, response: Record<number, object>) {
  return { summary, tags: ['totp'], response }
}

const nullableTime = (description: string) => ({ type: ['string', 'null'], format: 'date-time', description })

// what /status and /users/:userId both say of a user's state
const userState = {
  setupRequired: { type: 'boolean' },
  setupDeadline: nullableTime('End of the grace period of an enforced user without TOTP'),
  locked: { type: 'boolean' },
  lockedUntil: nullableTime('End of the lock; null when not locked or locked until unlocked'),
  recoveryCodesLeft: { type: 'integer', minimum: 0 }
} as const

/** GET /status. */
export const statusAnswer = {
  type: 'object',
  description: 'The signed-in user\'s TOTP state',
  required: ['enabled', 'enforced', 'verified', 'setupRequired', 'setupDeadline', 'locked', 'lockedUntil',
    'recoveryCodesLeft'],
  properties: {
    enabled: { type: 'boolean', description: 'An active secret' },
    enforced: { type: 'boolean', description: 'Effective: for the user, the whole tenant or one of their roles' },
    verified: { type: 'boolean', description: 'This session has verified a code' },
    ...userState
  }
} as const

/** POST /verify. */
export const verifyAnswer = {
  type: 'object',
  description: 'The session is verified',
  required: ['verified'],
  properties: {
    verified: { type: 'boolean', description: 'Always true' },
    deviceId: { type: 'string', description: 'The trusted device made with `trustDevice: true`' }
  }
} as const

/** POST /recover. */
export const recoverAnswer = {
  type: 'object',
  description: 'The session is verified; the recovery code is used up',
  required: ['verified', 'recoveryCodesLeft'],
  properties: {
    verified: { type: 'boolean', description: 'Always true' },
    recoveryCodesLeft: { type: 'integer', minimum: 0 }
  }
} as const

const recoveryCodeList = { type: 'array', items: { type: 'string' }, description: 'Shown once' } as const

/** POST /recovery-codes. */
export const recoveryCodesAnswer = {
  type: 'object',
  description: 'A new set of recovery codes; the old one is void',
  required: ['recoveryCodes'],
  properties: { recoveryCodes: recoveryCodeList }
} as const

/** GET /devices. */
export const devicesAnswer = {
  type: 'object',
  description: 'The user\'s trusted devices, newest first',
  required: ['devices'],
  properties: {
    devices: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'label', 'createdAt', 'expiresAt', 'current'],
        properties: {
          id: { type: 'string' },
          label: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: 'string', format: 'date-time' },
          current: { type: 'boolean', description: 'The device of this request' }
        }
      }
    }
  }
} as const

/** POST /setup. */
export const setupAnswer = {
  type: 'object',
  description: 'The pending secret (a second call while pending answers the same)',
  required: ['secret', 'uri', 'qr', 'expiresAt'],
  properties: {
    secret: { type: 'string', description: 'Base32, for manual entry' },
    uri: { type: 'string', description: 'otpauth://totp/… key URI' },
    qr: { type: 'string', description: 'The key URI as a PNG data URL' },
    expiresAt: { type: 'string', format: 'date-time' }
  }
} as const

/** POST /setup/confirm. */
export const confirmAnswer = {
  type: 'object',
  description: 'The secret is active and the session verified',
  required: ['enabled', 'verified'],
  properties: {
    enabled: { type: 'boolean', description: 'Always true' },
    verified: { type: 'boolean', description: 'Always true' },
    recoveryCodes: { ...recoveryCodeList, description: 'With `recoveryCodes` on; shown once' }
  }
} as const

/** GET /users/:userId (TotpUserStatus). */
export const userStatusAnswer = {
  type: 'object',
  description: 'The user\'s TOTP state',
  required: ['userId', 'enabled', 'enforced', 'setupRequired', 'setupDeadline', 'locked', 'lockedUntil',
    'recoveryCodesLeft'],
  properties: {
    userId: { type: 'string' },
    enabled: { type: 'boolean' },
    enforced: { type: 'boolean', description: 'The per-user flag' },
    ...userState
  }
} as const

/** PUT /users/:userId/enforcement. */
export const enforcementAnswer = {
  type: 'object',
  description: 'The per-user flag as set',
  required: ['userId', 'enforced'],
  properties: { userId: { type: 'string' }, enforced: { type: 'boolean' } }
} as const

/** GET and PUT /settings. */
export const settingsAnswer = {
  type: 'object',
  description: 'The tenant\'s settings',
  required: ['enforceAll', 'enforceRoles', 'gracePeriod'],
  properties: {
    enforceAll: { type: 'boolean' },
    enforceRoles: { type: 'array', items: { type: 'string' } },
    gracePeriod: { type: 'integer', minimum: 0, description: 'Seconds' }
  }
} as const

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
    if ((err.statusCode ?? 500) >= 500) request.log.error({ err }, 'fastify-totp-gate error')
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
