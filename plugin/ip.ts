import ipaddr from 'ipaddr.js'

/**
 * The bucket an address's failures are counted in: an IPv4 address itself (an IPv4-mapped IPv6
 * address included), an IPv6 address by its first `v6PrefixLength` bits (one /64 is one
 * subscriber's network: counting each of its 2^64 addresses apart would give no budget at all).
 * Null for anything that is not an IP address.
 */
export function ipBucket (ip: unknown, v6PrefixLength: number): string | null {
  if (typeof ip !== 'string' || !ipaddr.isValid(ip)) return null
  let addr = ipaddr.parse(ip)
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    addr = (addr as ipaddr.IPv6).toIPv4Address()
  }
  if (addr.kind() === 'ipv4') return addr.toString()
  const bytes = addr.toByteArray()
  for (let bit = v6PrefixLength; bit < 128; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7))
  return `${ipaddr.fromByteArray(bytes).toString()}/${v6PrefixLength}`
}
