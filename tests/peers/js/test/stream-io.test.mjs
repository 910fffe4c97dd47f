// StreamReader against js-libp2p's own yamux, fed hand-made frames (no network).
import '../lib/polyfill.mjs'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { checkPattern, patternSlice } from '../lib/pattern.mjs'
import { StreamReader, write } from '../lib/stream-io.mjs'

const SYN = 1
const FIN = 4

function frame (type, flags, id, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(12)
  h[1] = type
  h.writeUInt16BE(flags, 2)
  h.writeUInt32BE(id, 4)
  h.writeUInt32BE(payload.length, 8)
  return Buffer.concat([h, payload])
}

function inboundStreams () {
  const [outConn, inConn] = multiaddrConnectionPair()
  const muxer = yamux({ enableKeepAlive: false })().createStreamMuxer(inConn)
  return { outConn, muxer }
}

test('a DATA frame carrying FIN keeps its payload (StreamReader)', async (t) => {
  const { outConn, muxer } = inboundStreams()
  const got = []
  muxer.addEventListener('stream', (evt) => {
    const s = evt.detail
    if (s.streamId === 1) {
      // js-libp2p's own async iterator, for comparison
      got.push((async () => {
        const parts = []
        for await (const c of s) parts.push(Buffer.from(c.subarray()))
        return ['iterator', Buffer.concat(parts).toString()]
      })())
    } else {
      const r = new StreamReader(s)
      got.push((async () => ['reader', (await r.readAll()).toString()])())
    }
  })
  outConn.send(frame(0, SYN | FIN, 1, Buffer.from('hello')))
  outConn.send(frame(0, SYN | FIN, 3, Buffer.from('hello')))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const results = Object.fromEntries(await Promise.all(got))
  assert.equal(results.reader, 'hello')
  // js-libp2p 3.3 / yamux 8.0.1: the iterator ends on the FIN before the payload is delivered
  t.diagnostic(`for-await over the stream got ${JSON.stringify(results.iterator)} (js-libp2p drops a FIN frame's payload there)`)
})

test('StreamReader reads large transfers in bounded pieces, across pause/resume', async () => {
  const [a, b] = multiaddrConnectionPair()
  const client = yamux({ enableKeepAlive: false })().createStreamMuxer(a)
  const server = yamux({ enableKeepAlive: false })().createStreamMuxer(b)
  const size = 8 << 20
  const done = new Promise((resolve, reject) => {
    server.addEventListener('stream', (evt) => {
      const r = new StreamReader(evt.detail);
      (async () => {
        let off = 0
        for (;;) {
          // read slowly at first, so the reader pauses the stream
          if (off < (2 << 20)) await new Promise((resolve) => setTimeout(resolve, 1))
          const c = await r.read()
          if (c == null) break
          assert.ok(c.byteLength <= 64 << 10)
          checkPattern(c, off)
          off += c.byteLength
        }
        resolve(off)
      })().catch(reject)
    })
  })
  const s = await client.createStream()
  for (let off = 0; off < size; off += 65536) await write(s, patternSlice(off, 65536))
  await s.close()
  assert.equal(await done, size)
})
