import { createError } from '@fastify/error'

/** Every error the plugin answers with, in Fastify's `{ statusCode, code, error, message }` shape. */
export const TotpUnauthenticatedError = createError('FST_TOTP_UNAUTHENTICATED', 'Sign in first', 401)
export const TotpRequiredError = createError('FST_TOTP_REQUIRED', 'A TOTP code is required for this session', 401)
export const TotpSetupRequiredError = createError('FST_TOTP_SETUP_REQUIRED', 'TOTP must be set up before anything else', 403)
export const TotpInvalidCodeError = createError('FST_TOTP_INVALID_CODE', 'The code is wrong or was already used', 401)
export const TotpLockedError = createError('FST_TOTP_LOCKED', 'Too many wrong codes; retry in %s seconds', 429)
export const TotpAlreadyEnabledError = createError('FST_TOTP_ALREADY_ENABLED', 'TOTP is already set up for this user; only the parent user can revoke it', 409)
export const TotpNotEnabledError = createError('FST_TOTP_NOT_ENABLED', 'TOTP is not set up for this user', 409)
export const TotpNoPendingSetupError = createError('FST_TOTP_NO_PENDING_SETUP', 'No TOTP setup is pending, or it expired; start the setup again', 404)
export const TotpForbiddenError = createError('FST_TOTP_FORBIDDEN', 'Forbidden: %s', 403)
export const TotpUserNotFoundError = createError('FST_TOTP_USER_NOT_FOUND', 'No such user', 404)
export const TotpBadRequestError = createError('FST_TOTP_BAD_REQUEST', 'Bad request: %s', 400)
export const TotpUnavailableError = createError('FST_TOTP_UNAVAILABLE', 'TOTP service unavailable, try again shortly', 503)
export const TotpOptionsError = createError('FST_TOTP_OPTIONS', 'Invalid fastify-totp options: %s', 500)

/** Redis did not answer (down, hung or timed out): the plugin fails closed with 503. */
export class StoreUnavailable extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreUnavailable'
  }
}
