import type { FastifyInstance } from 'fastify'
import QRCode from 'qrcode'
import { requireUser, type TotpContext } from '../context.js'
import { seal } from '../crypto/seal.js'
import { TotpAlreadyEnabledError } from '../errors.js'
import { markVerified } from '../sessions.js'
import { encodeSecret, generateSecret, keyUri } from '../totp/index.js'
import { decideCode, SECRET_PURPOSE } from '../verification.js'
import { BODY_LIMIT, codeBody } from './schemas.js'

/** POST /setup and POST /setup/confirm: self-enrolment. */
export function setupRoutes (scope: FastifyInstance, ctx: TotpContext): void {
  const { totp, issuer, setupTtlMs } = ctx.opts

  scope.post('/setup', {
    config: { totp: { allowSetupRequired: true } }
  }, async (request, reply) => {
    const { user, ref, state } = requireUser(request)
    if (state.enabled) throw new TotpAlreadyEnabledError()
    const secret = generateSecret()
    const sealed = seal(ctx.keyRing, secret, { ...ref, purpose: SECRET_PURPOSE })
    const expiresAt = new Date(Date.now() + setupTtlMs).toISOString()
    if (await ctx.store.startSetup(ref, sealed, setupTtlMs) === 'already-enabled') throw new TotpAlreadyEnabledError()
    const base32 = encodeSecret(secret)
    const uri = keyUri({ issuer, account: user.label ?? user.id, secret: base32, params: totp })
    const qr = await QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, scale: 6 })
    ctx.emit(request, { type: 'setup.started', ...ref, ip: request.ip })
    reply.code(201)
    return { secret: base32, uri, qr, expiresAt }
  })

  scope.post<{ Body: { code: string } }>('/setup/confirm', {
    bodyLimit: BODY_LIMIT,
    schema: { body: codeBody(totp.digits) },
    config: { totp: { allowSetupRequired: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const gen = await decideCode(ctx, { request, reply, ref, kind: 'confirm' })
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'setup.confirmed', ...ref, ip: request.ip })
    return { enabled: true, verified: true }
  })
}
