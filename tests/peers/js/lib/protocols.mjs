// The protocols of tests/peers/README.md: inbound handlers ("what a peer serves") and the
// client side of the control commands. Every function takes an open, negotiated libp2p Stream.

import { createHash, randomBytes } from 'node:crypto'
import { CHUNK, checkPattern, patternSlice } from './pattern.mjs'
import { StreamReader, write } from './stream-io.mjs'

export const ECHO = '/echo/1.0.0'
export const ECHO_ALL = '/plait-test/echo-all/1.0.0'
export const SINK = '/plait-test/sink/1.0.0'
export const SOURCE = '/plait-test/source/1.0.0'
export const PERF = '/perf/1.0.0'
export const PING = '/ipfs/ping/1.0.0'

const ECHO_LINE_MAX = 64 * 1024
const PERF_RUN_TIMEOUT_MS = 5 * 60 * 1000
const ZEROS = Buffer.alloc(CHUNK)

function u64be (n) {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

function log (msg) {
  process.stderr.write(`${msg}\n`)
}

/** Runs an inbound handler body; on any error the stream is reset (yamux RST). */
function serve (name, body) {
  return async (stream, connection) => {
    try {
      await body(stream, connection)
    } catch (err) {
      if (stream.status === 'reset') {
        log(`${name} from ${connection.remotePeer}: the remote reset the stream`)
        return
      }
      log(`${name} from ${connection.remotePeer}: ${err.message ?? err}; resetting the stream`)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}

/** Writes `size` pattern bytes starting at pattern offset `offset`, with backpressure. */
async function writePattern (stream, offset, size, onWritten) {
  let done = 0
  while (done < size) {
    const len = Math.min(CHUNK, size - done)
    await write(stream, patternSlice(offset + done, len))
    done += len
    if (onWritten != null) onWritten(done)
  }
}

// ---------------------------------------------------------------------------- servers

// /echo/1.0.0: one line (at most 64 KiB, up to and including '\n') back, then close.
export const echoHandler = serve('echo', async (stream) => {
  const reader = new StreamReader(stream)
  const parts = []
  let total = 0
  for (;;) {
    const c = await reader.read()
    if (c == null) throw new Error(`EOF before a newline (${total} bytes)`)
    const nl = c.indexOf(0x0a)
    const part = nl >= 0 ? c.subarray(0, nl + 1) : c
    total += part.byteLength
    if (total > ECHO_LINE_MAX) throw new Error('line longer than 64 KiB')
    parts.push(part)
    if (nl >= 0) break
  }
  reader.detach()
  await write(stream, Buffer.concat(parts))
  await stream.close()
})

// /plait-test/echo-all/1.0.0: every byte back until EOF, then close the write side.
export const echoAllHandler = serve('echo-all', async (stream) => {
  const reader = new StreamReader(stream)
  for (;;) {
    const c = await reader.read()
    if (c == null) break
    await write(stream, c)
  }
  await stream.close()
})

// /plait-test/sink/1.0.0: read to EOF, answer u64 BE count + SHA-256, close.
export const sinkHandler = serve('sink', async (stream) => {
  const reader = new StreamReader(stream)
  const hash = createHash('sha256')
  let count = 0n
  for (;;) {
    const c = await reader.read()
    if (c == null) break
    hash.update(c)
    count += BigInt(c.byteLength)
  }
  await write(stream, Buffer.concat([u64be(count), hash.digest()]))
  await stream.close()
})

// /plait-test/source/1.0.0: read a u64 BE N, write N pattern bytes, close the write side.
export const sourceHandler = serve('source', async (stream) => {
  const reader = new StreamReader(stream)
  const n = Buffer.from(await reader.readExactly(8)).readBigUInt64BE()
  // discard anything else the client sends, so its bytes never pile up in our buffers
  const drain = (async () => { while (await reader.read() != null) { /* discard */ } })()
  drain.catch(() => {})
  let left = n
  let offset = 0
  while (left > 0n) {
    const len = left < BigInt(CHUNK) ? Number(left) : CHUNK
    await write(stream, patternSlice(offset, len))
    offset = (offset + len) % 251
    left -= BigInt(len)
  }
  await stream.close()
})

// /perf/1.0.0 server (shared/specs/perf.md): u64 BE N, drain to EOF, then N bytes, then close.
// 5 minutes per run at most; 64 KiB writes of zeros.
export const perfHandler = serve('perf', async (stream) => {
  const timer = setTimeout(() => stream.abort(new Error('perf run exceeded 5 minutes')), PERF_RUN_TIMEOUT_MS)
  try {
    const reader = new StreamReader(stream)
    const n = Buffer.from(await reader.readExactly(8)).readBigUInt64BE()
    while (await reader.read() != null) { /* discard the upload */ }
    let left = n
    while (left > 0n) {
      const len = left < BigInt(CHUNK) ? Number(left) : CHUNK
      await write(stream, len === CHUNK ? ZEROS : ZEROS.subarray(0, len))
      left -= BigInt(len)
    }
    await stream.close()
  } finally {
    clearTimeout(timer)
  }
})

// ---------------------------------------------------------------------------- clients

/** Runs a writer and a reader on one stream; if either fails, resets the stream. */
async function duplex (stream, writer, reader) {
  const fail = (err) => { stream.abort(err instanceof Error ? err : new Error(String(err))); throw err }
  const [, r] = await Promise.all([writer().catch(fail), reader().catch(fail)])
  return r
}

/** The seed's echo client: "Hello, world!\n", close write, the reply to EOF (a Buffer). */
export async function echoClient (stream) {
  const reader = new StreamReader(stream)
  await write(stream, Buffer.from('Hello, world!\n'))
  await stream.close()
  return reader.readAll(ECHO_LINE_MAX + 1)
}

/** One ping; returns the round-trip time in microseconds. */
export async function pingClient (stream) {
  const reader = new StreamReader(stream)
  const data = randomBytes(32)
  const t0 = process.hrtime.bigint()
  stream.send(data)
  const back = await reader.readExactly(32)
  const t1 = process.hrtime.bigint()
  if (!Buffer.from(back).equals(data)) throw new Error('ping: wrong payload echoed')
  await stream.close()
  return (t1 - t0) / 1000n
}

/**
 * Writes `size` pattern bytes (from pattern offset `offset`) on an echo-all stream, closes the
 * write side, reads the echo concurrently, checks it byte for byte; returns the SHA-256 (hex).
 */
export async function echoAllCheck (stream, offset, size) {
  const reader = new StreamReader(stream)
  return duplex(stream, async () => {
    await writePattern(stream, offset, size)
    await stream.close()
  }, async () => {
    const hash = createHash('sha256')
    let got = 0
    for (;;) {
      const c = await reader.read()
      if (c == null) break
      if (got + c.byteLength > size) throw new Error(`echo returned more than ${size} bytes`)
      checkPattern(c, offset + got)
      hash.update(c)
      got += c.byteLength
    }
    if (got !== size) throw new Error(`echo returned ${got} of ${size} bytes before EOF`)
    return hash.digest('hex')
  })
}

export async function sinkClient (stream, size) {
  const reader = new StreamReader(stream)
  return duplex(stream, async () => {
    await writePattern(stream, 0, size)
    await stream.close()
  }, async () => {
    const answer = await reader.readAll(1024)
    if (answer.length !== 40) throw new Error(`sink answered ${answer.length} bytes, expected 40`)
    const count = answer.readBigUInt64BE(0)
    const hash = createHash('sha256')
    for (let off = 0; off < size; off += CHUNK) hash.update(patternSlice(off, Math.min(CHUNK, size - off)))
    const want = hash.digest()
    if (count !== BigInt(size)) throw new Error(`sink counted ${count} bytes, we wrote ${size}`)
    if (!answer.subarray(8).equals(want)) throw new Error('sink hash differs from what we wrote')
    return want.toString('hex')
  })
}

export async function sourceClient (stream, size) {
  const reader = new StreamReader(stream)
  await write(stream, u64be(size))
  await stream.close()
  const hash = createHash('sha256')
  let got = 0
  try {
    for (;;) {
      const c = await reader.read()
      if (c == null) break
      if (got + c.byteLength > size) throw new Error(`source sent more than ${size} bytes`)
      checkPattern(c, got)
      hash.update(c)
      got += c.byteLength
    }
  } catch (err) {
    stream.abort(err)
    throw err
  }
  if (got !== size) throw new Error(`source sent ${got} of ${size} bytes before EOF`)
  return hash.digest('hex')
}

export async function halfcloseClient (stream) {
  const reader = new StreamReader(stream)
  await writePattern(stream, 0, 1024)
  await stream.close()
  const back = await reader.readAll(1 << 20)
  if (back.length !== 1024) throw new Error(`got ${back.length} bytes back after half-close, expected 1024`)
  checkPattern(back, 0)
}

export async function resetClient (stream) {
  const reader = new StreamReader(stream)
  await writePattern(stream, 0, 1024)
  let got = 0
  while (got < 1024) {
    const c = await reader.read()
    if (c == null) throw new Error(`EOF after ${got} of 1024 echoed bytes`)
    checkPattern(c, got)
    got += c.byteLength
  }
  if (got !== 1024) throw new Error(`echo returned ${got} bytes, expected 1024`)
  reader.detach()
  stream.abort(new Error('reset requested by the control command'))
}

export class TimeoutError extends Error {}

/** Pattern bytes until a write fails; returns the bytes the stream accepted. */
export async function writeUntilError (stream, timeoutMs) {
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; stream.abort(new Error('write-until-error timed out')) }, timeoutMs)
  // keep reading, so a sink answer or a reset is noticed
  const reader = new StreamReader(stream)
  const draining = (async () => { while (await reader.read() != null) { /* discard */ } })()
  draining.catch(() => {})
  let written = 0
  try {
    for (;;) {
      await write(stream, patternSlice(written, CHUNK))
      written += CHUNK
    }
  } catch (err) {
    if (timedOut) throw new TimeoutError('timeout')
    log(`write-until-error: write failed after ${written} bytes: ${err.message ?? err}`)
    return written
  } finally {
    clearTimeout(timer)
  }
}

/** Asks the source for 2^62 bytes and reads until EOF or an error. */
export async function readUntilError (stream, timeoutMs) {
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; stream.abort(new Error('read-until-error timed out')) }, timeoutMs)
  const reader = new StreamReader(stream)
  let got = 0
  try {
    await write(stream, u64be(1n << 62n))
    await stream.close()
    for (;;) {
      const c = await reader.read()
      if (c == null) return { bytes: got, how: 'eof' }
      got += c.byteLength
    }
  } catch (err) {
    if (timedOut) throw new TimeoutError('timeout')
    log(`read-until-error: read failed after ${got} bytes: ${err.message ?? err}`)
    return { bytes: got, how: 'error' }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * A perf client run (shared/specs/perf.md): returns [uploadSeconds, downloadSeconds], upload
 * from after the header to the write side closed, download from then to EOF.
 */
export async function perfClient (stream, upload, download) {
  const reader = new StreamReader(stream)
  let t0, t1, t2
  await duplex(stream, async () => {
    await write(stream, u64be(download))
    t0 = process.hrtime.bigint()
    let left = upload
    while (left > 0) {
      const len = Math.min(CHUNK, left)
      await write(stream, len === CHUNK ? ZEROS : ZEROS.subarray(0, len))
      left -= len
    }
    await stream.close()
    t1 = process.hrtime.bigint()
  }, async () => {
    let got = 0n
    for (;;) {
      const c = await reader.read()
      if (c == null) break
      got += BigInt(c.byteLength)
    }
    t2 = process.hrtime.bigint()
    if (got !== BigInt(download)) throw new Error(`perf: received ${got} bytes, asked for ${download}`)
  })
  return [Number(t1 - t0) / 1e9, Number(t2 - t1) / 1e9]
}
