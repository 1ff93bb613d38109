import { crc32 } from 'node:zlib'
import type { UserRef } from '../types.js'

// Encoded so that no tenant or user id can forge another's key or hash tag.
const enc = (s: string): string => /^[\w.@-]*$/.test(s) ? s : encodeURIComponent(s)

/**
 * Redis key layout. A user's keys share the hash tag `{tenant:shard}`, so each
 * user's scripts run on one cluster slot; the tenant's settings are copied into
 * every shard so the gate reads user and tenant in one command.
 */
export class KeyLayout {
  constructor (readonly prefix: string, readonly shards: number) {}

  tag (tenant: string, shard: number): string {
    return `${this.prefix}{${enc(tenant)}:${shard}}`
  }

  shardOf (userId: string): number {
    return crc32(userId) % this.shards
  }

  /** The hash tag every key of this user shares (pass it on when building several of them). */
  userTag (ref: UserRef): string {
    return this.tag(ref.tenant, this.shardOf(ref.userId))
  }

  user (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}u:${enc(ref.userId)}`
  }

  pending (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}p:${enc(ref.userId)}`
  }

  /** The keyed hashes of the user's recovery codes (a set). */
  recovery (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}r:${enc(ref.userId)}`
  }

  /** The user's trusted devices (a hash: device id → record). */
  devices (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}d:${enc(ref.userId)}`
  }

  settings (tenant: string, shard: number): string {
    return `${this.tag(tenant, shard)}t`
  }

  /** The copy of the tenant's settings in this user's slot. */
  settingsFor (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}t`
  }

  ip (ip: string): string {
    return `${this.prefix}ip:${enc(ip)}`
  }
}
