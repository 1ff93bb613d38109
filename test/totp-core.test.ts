import { existsSync, readFileSync } from 'node:fs'
import t from 'tap'
import { execFileSync } from 'node:child_process'
import {
  DEFAULT_TOTP_PARAMS,
  SECRET_BYTES,
  decodeSecret,
  encodeSecret,
  generateCode,
  generateSecret,
  keyUri,
  timeStepAt,
  verifyCode,
  type HashAlgorithm,
  type TotpParams
} from '../plugin/totp/index.js'

// RFC 6238 Appendix B (a copy of /work/shared/vectors/rfc6238.json): 8 digits, 30 s, T0 = 0, ASCII secrets.
const RFC6238 = {
  secrets: {
    sha1: '12345678901234567890',
    sha256: '12345678901234567890123456789012',
    sha512: '1234567890123456789012345678901234567890123456789012345678901234'
  },
  vectors: [
    { time: 59, sha1: '94287082', sha256: '46119246', sha512: '90693936' },
    { time: 1111111109, sha1: '07081804', sha256: '68084774', sha512: '25091201' },
    { time: 1111111111, sha1: '14050471', sha256: '67062674', sha512: '99943326' },
    { time: 1234567890, sha1: '89005924', sha256: '91819424', sha512: '93441116' },
    { time: 2000000000, sha1: '69279037', sha256: '90698825', sha512: '38618901' },
    { time: 20000000000, sha1: '65353130', sha256: '77737706', sha512: '47863826' }
  ]
} as const

const ALGORITHMS: HashAlgorithm[] = ['sha1', 'sha256', 'sha512']
const NOW = 1_700_000_015 // mid-step, so ±0.5 step of clock noise cannot move it
const params = (p: Partial<TotpParams> = {}): TotpParams => ({ ...DEFAULT_TOTP_PARAMS, ...p })

function oathtool (secret: Uint8Array, epoch: number, p: TotpParams = DEFAULT_TOTP_PARAMS): string {
  return execFileSync('oathtool', [
    `--totp=${p.algorithm.toUpperCase()}`, '-b', `--digits=${p.digits}`, `--time-step-size=${p.period}s`,
    `--now=@${epoch}`, encodeSecret(secret)
  ], { encoding: 'utf8' }).trim()
}

t.test('S1 RFC 6238 vectors: the copy above is the project\'s shared vectors file', async (t) => {
  // ../shared sits beside the clone in development and in CI; a clone elsewhere has only the copy
  const file = new URL('../../shared/vectors/rfc6238.json', import.meta.url)
  if (!existsSync(file)) return t.pass('shared/vectors not beside this clone: using the copy')
  const shared = JSON.parse(readFileSync(file, 'utf8'))
  const secrets = Object.entries(shared.secrets).map(([k, v]: [string, any]) => [k.toLowerCase(), v.ascii])
  t.same(Object.fromEntries(secrets), RFC6238.secrets)
  const vectors = shared.vectors.map((v: any) => ({ time: v.time, sha1: v.SHA1, sha256: v.SHA256, sha512: v.SHA512 }))
  t.same(vectors, RFC6238.vectors)
  t.equal(shared.digits, 8)
  t.equal(shared.period, 30)
})

t.test('S1 RFC 6238 vectors: generate and verify for SHA1, SHA256 and SHA512', async (t) => {
  for (const algorithm of ALGORITHMS) {
    const secret = Buffer.from(RFC6238.secrets[algorithm], 'ascii')
    const p = params({ algorithm, digits: 8, window: 0 })
    for (const v of RFC6238.vectors) {
      const code = v[algorithm]
      t.equal(generateCode(secret, p, v.time), code, `${algorithm} generate at ${v.time}`)
      t.same(verifyCode(secret, code, p, { epochSeconds: v.time }),
        { valid: true, delta: 0, timeStep: Math.floor(v.time / 30) }, `${algorithm} verify at ${v.time}`)
    }
  }
})

t.test('S1 interop with oathtool: previous, current and next steps accepted, 2+ steps refused', async (t) => {
  const step = timeStepAt(DEFAULT_TOTP_PARAMS, NOW)
  for (let i = 0; i < 3; i++) {
    const secret = generateSecret()
    const codes = new Map<number, string>()
    for (let k = -2; k <= 2; k++) {
      codes.set(k, oathtool(secret, NOW + 30 * k))
      t.equal(generateCode(secret, DEFAULT_TOTP_PARAMS, NOW + 30 * k), codes.get(k), `same code as oathtool at step ${k}`)
    }
    for (const k of [-1, 0, 1]) {
      t.same(verifyCode(secret, codes.get(k)!, DEFAULT_TOTP_PARAMS, { epochSeconds: NOW }),
        { valid: true, delta: k, timeStep: step + k }, `step ${k} accepted`)
    }
    const accepted = new Set([-1, 0, 1].map((k) => codes.get(k)))
    for (const k of [-2, 2]) {
      // A 6-digit collision with an accepted step (p ≈ 3e-6) would make this assertion meaningless.
      if (accepted.has(codes.get(k))) continue
      t.same(verifyCode(secret, codes.get(k)!, DEFAULT_TOTP_PARAMS, { epochSeconds: NOW }), { valid: false }, `step ${k} refused`)
    }
  }
})

t.test('S1 interop with oathtool: SHA256, SHA512, 7 and 8 digits, 60 s steps', async (t) => {
  for (const p of [
    params({ algorithm: 'sha256', digits: 8 }),
    params({ algorithm: 'sha512', digits: 7 }),
    params({ period: 60 })
  ]) {
    const secret = generateSecret(p.algorithm === 'sha1' ? SECRET_BYTES : 32)
    const code = oathtool(secret, NOW, p)
    t.equal(generateCode(secret, p, NOW), code, `${p.algorithm}/${p.digits}/${p.period}s generate`)
    t.same(verifyCode(secret, code, p, { epochSeconds: NOW }),
      { valid: true, delta: 0, timeStep: timeStepAt(p, NOW) }, `${p.algorithm}/${p.digits}/${p.period}s verify`)
  }
})

t.test('S1 window is configurable: 0 accepts only the current step, 2 accepts ±2 but not ±3', async (t) => {
  const secret = generateSecret()
  const at = (k: number): string => generateCode(secret, DEFAULT_TOTP_PARAMS, NOW + 30 * k)
  const current = new Set([at(0)])
  const w0 = params({ window: 0 })
  t.match(verifyCode(secret, at(0), w0, { epochSeconds: NOW }), { valid: true, delta: 0 })
  for (const k of [-1, 1]) {
    if (!current.has(at(k))) t.same(verifyCode(secret, at(k), w0, { epochSeconds: NOW }), { valid: false }, `window 0 refuses step ${k}`)
  }
  const w2 = params({ window: 2 })
  for (const k of [-2, 2]) t.match(verifyCode(secret, at(k), w2, { epochSeconds: NOW }), { valid: true, delta: k }, `window 2 accepts ${k}`)
  const inWindow2 = new Set([-2, -1, 0, 1, 2].map(at))
  for (const k of [-3, 3]) {
    if (!inWindow2.has(at(k))) t.same(verifyCode(secret, at(k), w2, { epochSeconds: NOW }), { valid: false }, `window 2 refuses ${k}`)
  }
})

t.test('S1 verification and time steps default to the current time', async (t) => {
  const secret = generateSecret()
  t.match(verifyCode(secret, generateCode(secret)), { valid: true })
  const before = Math.floor(Date.now() / 30000)
  const step = timeStepAt(DEFAULT_TOTP_PARAMS)
  t.ok(step >= before && step <= before + 1)
})

t.test('S1 secrets are 20 random bytes from the CSPRNG and differ', async (t) => {
  t.equal(SECRET_BYTES, 20)
  t.same(DEFAULT_TOTP_PARAMS, { algorithm: 'sha1', digits: 6, period: 30, window: 1 })
  t.ok(Object.isFrozen(DEFAULT_TOTP_PARAMS))
  const secrets = Array.from({ length: 50 }, () => generateSecret())
  for (const s of secrets) t.equal(s.length, 20)
  t.equal(new Set(secrets.map((s) => s.toString('hex'))).size, secrets.length)
  t.equal(generateSecret(32).length, 32)
})

t.test('S7 malformed codes are { valid: false } and never throw', async (t) => {
  const secret = generateSecret()
  const current = generateCode(secret, DEFAULT_TOTP_PARAMS, NOW)
  const bad: unknown[] = [
    '12345', '1234567', 'abcdef', '١٢٣٤٥٦', '', ' 123456', '123456 ', '12345\n', '12 456', '+12345', '-12345',
    '1e5000', '0x1234', '１２３４５６', `${current}0`, ` ${current}`, 123456, Number(current), null, undefined, {}, ['123456']
  ]
  for (const code of bad) {
    t.same(verifyCode(secret, code as string, DEFAULT_TOTP_PARAMS, { epochSeconds: NOW }), { valid: false }, `refuses ${JSON.stringify(code)}`)
  }
  t.same(verifyCode(secret, current, params({ digits: 8 }), { epochSeconds: NOW }), { valid: false }, '6 digits when 8 are configured')
})

t.test('S3 afterTimeStep refuses older and equal steps, and does not throw beyond the window', async (t) => {
  let secret = generateSecret()
  const at = (k: number): string => generateCode(secret, DEFAULT_TOTP_PARAMS, NOW + 30 * k)
  // Equal codes in two steps of the window (p ≈ 3e-6) would blur which step matched.
  while (new Set([at(-1), at(0), at(1)]).size !== 3) secret = generateSecret()
  const step = timeStepAt(DEFAULT_TOTP_PARAMS, NOW)
  const verify = (code: string, afterTimeStep: number) =>
    verifyCode(secret, code, DEFAULT_TOTP_PARAMS, { epochSeconds: NOW, afterTimeStep })

  t.same(verify(at(0), step - 1), { valid: true, delta: 0, timeStep: step }, 'newer than the last used step')
  t.same(verify(at(0), step), { valid: false }, 'the same step again (replay)')
  t.same(verify(at(-1), step - 1), { valid: false }, 'an equal older step')
  t.same(verify(at(-1), step), { valid: false }, 'an older step')
  t.same(verify(at(1), step), { valid: true, delta: 1, timeStep: step + 1 }, 'the next step after the current was used')
  t.same(verify(at(-1), step - 0.5), { valid: false }, 'a fractional mark is floored')
  t.same(verify(at(0), step - 0.5), { valid: true, delta: 0, timeStep: step })
  for (const mark of [step + 1, step + 2, step + 1000, Number.MAX_SAFE_INTEGER, Infinity, NaN]) {
    t.same(verify(at(1), mark), { valid: false }, `mark ${mark} at or past the window`)
  }
  for (const mark of [-1, -Infinity]) {
    t.same(verify(at(-1), mark), { valid: true, delta: -1, timeStep: step - 1 }, `negative mark ${mark} refuses nothing`)
  }
})

t.test('S1 keyUri follows the Key Uri Format: Issuer:account label, issuer= too', async (t) => {
  const secret = encodeSecret(generateSecret())
  t.equal(keyUri({ issuer: 'Acme', account: 'alice', secret }),
    `otpauth://totp/Acme:alice?secret=${secret}&issuer=Acme&algorithm=SHA1&digits=6&period=30`)

  const uri = keyUri({ issuer: 'Acme Co', account: 'alice smith@example.com', secret })
  t.equal(uri, `otpauth://totp/Acme%20Co:alice%20smith%40example.com?secret=${secret}&issuer=Acme%20Co&algorithm=SHA1&digits=6&period=30`)
  t.notMatch(uri, /\+/, 'spaces are %20, never +')
  const parsed = new URL(uri)
  t.equal(parsed.protocol, 'otpauth:')
  t.equal(parsed.host, 'totp')
  t.equal(decodeURIComponent(parsed.pathname.slice(1)), 'Acme Co:alice smith@example.com')
  t.equal(parsed.searchParams.get('issuer'), 'Acme Co')

  t.equal(keyUri({ issuer: 'Acme', account: 'bob', secret, params: params({ algorithm: 'sha512', digits: 8, period: 60 }) }),
    `otpauth://totp/Acme:bob?secret=${secret}&issuer=Acme&algorithm=SHA512&digits=8&period=60`)
  t.equal(keyUri({ issuer: 'Ünïcode ✓', account: 'a&b=c?d/e', secret }),
    `otpauth://totp/%C3%9Cn%C3%AFcode%20%E2%9C%93:a%26b%3Dc%3Fd%2Fe?secret=${secret}&issuer=%C3%9Cn%C3%AFcode%20%E2%9C%93&algorithm=SHA1&digits=6&period=30`)
})

t.test('S1 keyUri removes colons from issuer and account, and refuses empty parts', async (t) => {
  const secret = encodeSecret(generateSecret())
  const uri = keyUri({ issuer: 'Acme:Corp', account: 'tenant:alice', secret })
  t.equal(uri, `otpauth://totp/AcmeCorp:tenantalice?secret=${secret}&issuer=AcmeCorp&algorithm=SHA1&digits=6&period=30`)
  t.equal(uri.split(':').length, 3, 'only the scheme colon and the label separator')
  t.equal(keyUri({ issuer: ' Acme: ', account: ':alice ', secret }), keyUri({ issuer: 'Acme', account: 'alice', secret }), 'trimmed after removal')
  for (const [issuer, account] of [['', 'alice'], ['Acme', ''], [':', 'alice'], ['Acme', ' : '], [undefined, 'alice']]) {
    t.throws(() => keyUri({ issuer: issuer as string, account: account as string, secret }), TypeError, `issuer ${JSON.stringify(issuer)}, account ${JSON.stringify(account)}`)
  }
})

t.test('S1 keyUri writes the secret canonically and refuses a non-base32 one', async (t) => {
  const bytes = generateSecret()
  const canonical = encodeSecret(bytes)
  const sloppy = canonical.toLowerCase().replace(/(.{4})/g, '$1 ')
  t.match(keyUri({ issuer: 'Acme', account: 'alice', secret: sloppy }), `?secret=${canonical}&`)
  t.throws(() => keyUri({ issuer: 'Acme', account: 'alice', secret: 'not base32!' }), TypeError)
})

t.test('S1 base32: RFC 4648 vectors, tolerant decoding, round trip', async (t) => {
  const rfc4648: Array<[string, string]> = [
    ['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']
  ]
  for (const [plain, b32] of rfc4648) {
    t.equal(encodeSecret(Buffer.from(plain)), b32, `encode ${JSON.stringify(plain)}`)
    if (plain !== '') t.equal(decodeSecret(b32).toString(), plain, `decode ${b32}`)
  }
  t.equal(decodeSecret('MZXW6YQ=').toString(), 'foob', 'padding')
  t.equal(decodeSecret('mzxw 6ytb oi======\n').toString(), 'foobar', 'lower case, spaces, padding')
  for (let i = 0; i < 20; i++) {
    const bytes = generateSecret(1 + i)
    const text = encodeSecret(bytes)
    t.match(text, /^[A-Z2-7]+$/)
    t.same(decodeSecret(text), bytes)
  }
  t.equal(encodeSecret(generateSecret()).length, 32, '160 bits are 32 characters')
  for (const bad of ['', '   ', '====', 'A', 'ABC', 'ABCDEF', 'MZXW6YQ1', 'MZXW0YQ', 'MZ=XW6YQ', 'MZXW6YQ!']) {
    t.throws(() => decodeSecret(bad), TypeError, `refuses ${JSON.stringify(bad)}`)
  }
  t.throws(() => decodeSecret(42 as unknown as string), TypeError)
})

t.test('S3 a code two steps of the window share consumes the newer, so it cannot be replayed against the older', async (t) => {
  // found by search: HOTP(secret, 59000000) = HOTP(secret, 59000001) = 363253 (1 secret in 10^6 has such a pair)
  const secret = Buffer.from('3e35a8dd5ba67b94cc2ae035728ccfab6323a586', 'hex')
  const step = 59_000_001
  const epochSeconds = (step + 0.5) * 30
  t.equal(generateCode(secret, DEFAULT_TOTP_PARAMS, (step - 1) * 30), '363253')
  t.equal(generateCode(secret, DEFAULT_TOTP_PARAMS, step * 30), '363253')
  const first = verifyCode(secret, '363253', DEFAULT_TOTP_PARAMS, { epochSeconds })
  t.same(first, { valid: true, delta: 0, timeStep: step }, 'the newer step is the one consumed')
  t.same(verifyCode(secret, '363253', DEFAULT_TOTP_PARAMS, { epochSeconds, afterTimeStep: step }), { valid: false }, 'the same code again is a replay')
})

t.test('S1/S3 verifyCode agrees with otplib\'s verifySync (the library as oracle) on random cases', async (t) => {
  const { verifySync } = await import('@otplib/totp')
  const { NodeCryptoPlugin } = await import('@otplib/plugin-crypto-node')
  const crypto = new NodeCryptoPlugin()
  let disagreements = 0
  let valid = 0
  for (let i = 0; i < 2000; i++) {
    const algorithm = ALGORITHMS[i % 3]
    const p = params({ algorithm, digits: ([6, 7, 8] as const)[i % 3], window: i % 3, period: [30, 60][i % 2] })
    const secret = generateSecret(20 + (i % 3) * 12)
    const epoch = 1_600_000_000 + Math.floor(Math.random() * 400_000_000)
    // half the codes are real codes of a nearby step, half are random digits
    const code = i % 2 === 0
      ? generateCode(secret, p, epoch + (Math.floor(Math.random() * 7) - 3) * p.period)
      : String(Math.floor(Math.random() * 10 ** p.digits)).padStart(p.digits, '0')
    const step = Math.floor(epoch / p.period)
    const afterTimeStep = i % 4 === 0 ? step - 1 + (i % 8 === 0 ? 0 : -1) : undefined
    const ours = verifyCode(secret, code, p, { epochSeconds: epoch, afterTimeStep })
    const theirs = verifySync({
      secret,
      token: code,
      crypto,
      algorithm,
      digits: p.digits,
      period: p.period,
      epoch,
      epochTolerance: p.window * p.period,
      afterTimeStep
    })
    const stepDiffers = ours.valid && theirs.valid && ours.timeStep !== theirs.timeStep
    if (ours.valid !== theirs.valid || stepDiffers) disagreements++
    if (ours.valid) valid++
  }
  t.equal(disagreements, 0, 'same verdict and same time step')
  t.ok(valid > 300, `enough valid cases (${valid})`)
})
