// Byte-stream reading and writing on js-libp2p 3.x message streams, with backpressure both ways.
//
// js-libp2p 3.x streams (`@libp2p/interface` Stream / MessageStream) are event based:
// - incoming data arrives as 'message' events (Uint8Array | Uint8ArrayList); 'remoteCloseWrite'
//   means the remote half-closed (yamux FIN); 'close' ends the stream, with `evt.error` set on a
//   local abort or a remote reset, unset on a clean close (or when the connection went away);
// - `send(data)` returns false when the muxer/transport is full: the caller should then wait for
//   'drain'; `close()` half-closes (FIN) after flushing; `abort(err)` resets (yamux RST).
//
// Two things of the 3.x API we deliberately do not rely on:
// - `for await (const chunk of stream)`: its iterator ends on 'remoteCloseWrite', and a yamux
//   data frame that carries FIN with a payload is processed flag first (stream.js handleData:
//   processFlags before onData), so the payload of such a frame is pushed after the iterator
//   ended and is dropped. The reader below re-checks for EOF only after the current frame is
//   processed (a promise continuation), so it gets that payload.
// - `stream.onDrain()`: it caches its first promise and keeps returning it, already resolved,
//   after the first drain (abstract-message-stream.js), so it stops applying backpressure. We
//   wait for the 'drain' event ourselves.
//
// Receive-side backpressure: past HIGH_WATER queued bytes the reader calls `stream.pause()`,
// which stops yamux window updates; the remote can still send what its window allows (at most
// the yamux max stream window, 16 MiB), which lands in the stream's own read buffer. That
// buffer aborts the stream beyond `maxReadBufferLength` (4 MiB by default), so the reader raises
// that limit for its stream to PAUSED_READ_BUFFER. Measured against Plait on a loaded machine:
// with 32 MiB, a 64 MiB echo-all transfer overflowed it while paused ("Read buffer length of
// 33619823 exceeded limit"): js-libp2p's yamux credits the sender as frames arrive, not as the
// application reads them, so pausing does not bound what is still on its way. 128 MiB holds
// any transfer the suites make.

const HIGH_WATER = 1 << 20
const LOW_WATER = 256 << 10
const PAUSED_READ_BUFFER = 128 << 20
// read() hands out at most this much at a time (a view, no copy), so a caller that writes what
// it reads (echo-all) never queues more than one such piece in the stream's write buffer
const MAX_READ = 64 << 10

export class StreamReader {
  /** @param {import('@libp2p/interface').Stream} stream */
  constructor (stream) {
    this.stream = stream
    this.chunks = []
    this.queued = 0
    this.fin = false
    this.closed = false
    this.error = null
    this.wake = null
    if (stream.maxReadBufferLength < PAUSED_READ_BUFFER) stream.maxReadBufferLength = PAUSED_READ_BUFFER

    this.onMessage = (evt) => {
      // a Uint8ArrayList is iterable over its buffers: keep them as they are, without a copy
      const bufs = evt.data instanceof Uint8Array ? [evt.data] : evt.data
      for (const b of bufs) {
        if (b.byteLength === 0) continue
        this.chunks.push(b)
        this.queued += b.byteLength
      }
      if (this.queued >= HIGH_WATER && stream.readStatus === 'readable') {
        try { stream.pause() } catch {}
      }
      this.notify()
    }
    this.onRemoteCloseWrite = () => { this.fin = true; this.notify() }
    this.onClose = (evt) => {
      this.closed = true
      if (evt.error != null && this.error == null) this.error = evt.error
      this.notify()
    }
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    stream.addEventListener('close', this.onClose)
    // the stream may have half-closed or closed before we attached
    if (stream.remoteWriteStatus === 'closed' && stream.status === 'open') this.fin = true
    if (stream.status === 'closed') { this.closed = true; if (stream.remoteWriteStatus === 'closed') this.fin = true }
    if (stream.status === 'aborted' || stream.status === 'reset') {
      this.closed = true
      this.error = new Error(`stream ${stream.status}`)
    }
  }

  notify () {
    const w = this.wake
    this.wake = null
    if (w != null) w()
  }

  detach () {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.stream.removeEventListener('close', this.onClose)
  }

  maybeResume () {
    const s = this.stream
    if (s.readStatus === 'paused' && this.queued < LOW_WATER) {
      try { s.resume() } catch {}
    }
  }

  /**
   * The next chunk (at most MAX_READ bytes), or null at EOF (the remote half-closed). Throws if the stream was reset or
   * aborted, or closed without a FIN (the connection went away).
   * @returns {Promise<Uint8Array|null>}
   */
  async read () {
    for (;;) {
      // resuming a paused stream dispatches its buffered data synchronously into this.chunks
      this.maybeResume()
      if (this.chunks.length > 0) {
        let c = this.chunks.shift()
        if (c.byteLength > MAX_READ) {
          this.chunks.unshift(c.subarray(MAX_READ))
          c = c.subarray(0, MAX_READ)
        }
        this.queued -= c.byteLength
        return c
      }
      if (this.error != null) throw this.error
      if ((this.fin || this.closed) && this.stream.readBufferLength === 0) {
        if (this.fin) return null
        throw new Error('stream closed before the remote closed its write side (connection closed)')
      }
      await new Promise((resolve) => { this.wake = resolve })
    }
  }

  /** Read exactly n bytes (n small); throws on EOF before that. */
  async readExactly (n) {
    const out = new Uint8Array(n)
    let have = 0
    while (have < n) {
      const c = await this.read()
      if (c == null) throw new Error(`unexpected EOF after ${have} of ${n} bytes`)
      const take = Math.min(n - have, c.byteLength)
      out.set(c.subarray(0, take), have)
      have += take
      if (take < c.byteLength) this.unread(c.subarray(take))
    }
    return out
  }

  unread (c) {
    this.chunks.unshift(c)
    this.queued += c.byteLength
  }

  /** Read to EOF, collecting at most `limit` bytes. */
  async readAll (limit = 1 << 20) {
    const parts = []
    let total = 0
    for (;;) {
      const c = await this.read()
      if (c == null) break
      total += c.byteLength
      if (total > limit) throw new Error(`more than ${limit} bytes`)
      parts.push(c)
    }
    return Buffer.concat(parts)
  }
}

/** Wait until the stream accepts data again; throws if it closes first. */
export function waitDrain (stream) {
  if (!stream.writableNeedsDrain) return Promise.resolve()
  if (stream.writeStatus !== 'writable' && stream.writeStatus !== 'closing') {
    return Promise.reject(new Error(`stream not writable (${stream.status})`))
  }
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
    }
    const onDrain = () => { cleanup(); resolve() }
    const onClose = (evt) => {
      cleanup()
      reject(evt.error ?? new Error('stream closed while waiting to write'))
    }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
  })
}

/** Send one chunk; returns once the stream is ready for the next one. */
export async function write (stream, data) {
  if (!stream.send(data)) await waitDrain(stream)
}
