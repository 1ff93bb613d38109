import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import type { TotpUser } from '../plugin/index.js'

/** A user of the demo: the identity fastify-totp-gate needs, with tenant and parent filled in. */
export interface DemoUser extends TotpUser {
  tenant: string
  parentId: string | null
}

const ADMIN = 'ROLE_USER_MANAGEMENT_ADMIN'
const CREATE = 'ROLE_USER_MANAGEMENT_CREATE'
const READ = 'ROLE_USER_MANAGEMENT_READ'

/** The SPEC's demo hierarchy. Every password is `demo`. */
export const DEMO_USERS: readonly DemoUser[] = [
  { id: 'admin', tenant: 'default', parentId: null, roles: [ADMIN, CREATE, READ] },
  { id: 'manager', tenant: 'default', parentId: 'admin', roles: [CREATE, READ] },
  { id: 'alice', tenant: 'default', parentId: 'manager', roles: [] },
  { id: 'carol', tenant: 'default', parentId: 'manager', roles: [] },
  { id: 'bob', tenant: 'default', parentId: 'admin', roles: [] }
]
export const DEMO_PASSWORD = 'demo'

const KEY_LENGTH = 64
const hash = (password: string, salt: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
  scrypt(password, salt, KEY_LENGTH, (err, key) => err ? reject(err) : resolve(key))
})

export interface Directory {
  find: (tenant: string, id: string) => DemoUser | null
  list: (tenant: string) => DemoUser[]
  /** The user when the password matches, else null. */
  authenticate: (tenant: string, username: string, password: string) => Promise<DemoUser | null>
}

/** The app's own first factor: users and scrypt password hashes (random salt each), made at startup. */
export async function createDirectory (
  users: readonly DemoUser[] = DEMO_USERS,
  password = DEMO_PASSWORD
): Promise<Directory> {
  const hashes = new Map<DemoUser, { salt: Buffer; key: Buffer }>()
  await Promise.all(users.map(async (user) => {
    const salt = randomBytes(16)
    hashes.set(user, { salt, key: await hash(password, salt) })
  }))
  // unknown names cost one scrypt too, so timing does not tell which names exist
  const nobody = { salt: randomBytes(16), key: randomBytes(KEY_LENGTH) }
  const find = (tenant: string, id: string): DemoUser | null =>
    users.find((u) => u.id === id && u.tenant === tenant) ?? null

  return {
    find,
    list: (tenant) => users.filter((u) => u.tenant === tenant),
    async authenticate (tenant, username, given) {
      const user = find(tenant, username)
      const stored = (user !== null ? hashes.get(user) : undefined) ?? nobody
      const ok = timingSafeEqual(await hash(given, stored.salt), stored.key)
      return ok && user !== null ? user : null
    }
  }
}
