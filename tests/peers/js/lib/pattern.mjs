// The test pattern of tests/peers/README.md: byte i is (i * 31 + 7) mod 251. It repeats every 251
// bytes, so one buffer of CHUNK + 251 bytes serves any window: pattern bytes [off, off + len)
// are PATTERN[off mod 251 .. off mod 251 + len) for len <= CHUNK.

export const CHUNK = 64 * 1024
const PERIOD = 251

export const PATTERN = (() => {
  const b = Buffer.alloc(CHUNK + PERIOD)
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + 7) % PERIOD
  return b
})()

/** Pattern bytes [offset, offset + len), len <= CHUNK; offset may be a Number or a BigInt. */
export function patternSlice (offset, len) {
  const start = typeof offset === 'bigint' ? Number(offset % 251n) : offset % PERIOD
  return PATTERN.subarray(start, start + len)
}

/** Checks that `data` equals the pattern starting at `offset`; throws on a mismatch. */
export function checkPattern (data, offset) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  for (let pos = 0; pos < buf.length; pos += CHUNK) {
    const len = Math.min(CHUNK, buf.length - pos)
    const got = buf.subarray(pos, pos + len)
    const want = patternSlice(offset + pos, len)
    if (!got.equals(want)) {
      for (let i = 0; i < len; i++) {
        if (got[i] !== want[i]) {
          throw new Error(`byte ${offset + pos + i} is ${got[i]}, expected ${want[i]}`)
        }
      }
    }
  }
}
