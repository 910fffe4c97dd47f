// Builds the js-libp2p node. Transports are listed in TRANSPORTS so another one (QUIC, when
// js-libp2p has a Node.js QUIC transport) is one more entry: a factory for createLibp2p and the
// listen address it takes for a host and port.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'

export const TRANSPORTS = {
  tcp: {
    factory: () => tcp(),
    listenAddr: (host, port) => `/ip4/${host}/tcp/${port}`,
    // the component that carries the port in this transport's addresses
    portProtocol: 'tcp'
  }
}

const SECURITY = {
  noise: () => noise(),
  plaintext: () => plaintext()
}

/**
 * @param {object} o
 * @param {import('@libp2p/interface').PrivateKey} o.privateKey
 * @param {string[]} o.transports names in TRANSPORTS
 * @param {string[]} o.security names in SECURITY, in preference order
 * @param {string|null} o.host IPv4 address to listen on, or null to not listen
 * @param {number} o.port
 * @param {boolean} [o.start] start at once (default true)
 */
export async function createNode (o) {
  const listen = o.host == null ? [] : o.transports.map((t) => TRANSPORTS[t].listenAddr(o.host, o.port))
  return createLibp2p({
    start: o.start ?? true,
    privateKey: o.privateKey,
    addresses: { listen },
    transports: o.transports.map((t) => TRANSPORTS[t].factory()),
    connectionEncrypters: o.security.map((s) => SECURITY[s]()),
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      ping: ping()
    },
    connectionManager: {
      // js-libp2p refuses more than 5 inbound connections per second from one host, more than
      // 10 pending upgrades and more than 300 connections, and prunes connections beyond 300; a
      // harness that dials repeatedly from 127.0.0.1 trips these. Addresses on the allow list
      // bypass all of them (test networks only: loopback and the harness's own namespaces).
      allow: ['/ip4/0.0.0.0/ipcidr/0']
    },
    connectionMonitor: {
      // js-libp2p pings every connection every 10 s and by default aborts the connection when
      // a ping fails or is slow (adaptive timeout); under a 64 MiB transfer on a loaded 2-core
      // machine that kills healthy connections. The pings still run; a failed one is logged only.
      abortConnectionOnPingFailure: false
    }
  })
}
