import type { FastifyInstance } from 'fastify'
import QRCode from 'qrcode'
import { seal } from '../crypto/seal.js'
import { TotpAlreadyEnabledError, TotpNoPendingSetupError } from '../errors.js'
import { checkCode, decideOnCurrent, failure, guarded, locked, markVerified, requireUser, SECRET_PURPOSE, type TotpContext } from '../context.js'
import { encodeSecret, generateSecret, keyUri } from '../totp/index.js'
import { BODY_LIMIT, codeBody } from './schemas.js'

/** POST /setup and POST /setup/confirm (R1, R2). */
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
    if (await guarded(ctx.store.startSetup(ref, sealed, setupTtlMs)) === 'already-enabled') throw new TotpAlreadyEnabledError()
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
    // the confirmation itself requires the very pending secret checked; a wrong code is charged
    // only while the read's generation is the user's (else checked again, as on /verify)
    const r = await decideOnCurrent(async (fresh) => {
      const checked = await checkCode(ctx, request, reply, ref, 'setup.failed', (st) => {
        if (st.sealed !== null) throw new TotpAlreadyEnabledError()
        if (st.pending === null) throw new TotpNoPendingSetupError()
        return { sealed: st.pending, afterTimeStep: st.lastStep }
      }, fresh)
      // the IP's budget, when the gate's read did not bring it, is checked with the confirmation
      return checked && guarded(ctx.store.confirmSetup(ref, checked.sealed, checked.timeStep, checked.ip))
    })
    if (!r.ok) {
      if (r.reason === 'ip-locked') locked(reply, r.retryAfterMs)
      if (r.reason === 'already-enabled') throw new TotpAlreadyEnabledError()
      if (r.reason === 'no-pending') throw new TotpNoPendingSetupError()
      return failure(ctx, request, reply, ref, 'setup.failed', r)
    }
    await markVerified(request, ref, r.gen)
    ctx.emit(request, { type: 'setup.confirmed', ...ref, ip: request.ip })
    return { enabled: true, verified: true }
  })
}
