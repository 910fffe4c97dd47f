package main

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// agentVersion is what identify announces. go-libp2p's default is derived from the main
// module's build info ("<module path>@<version or vcs revision>"), which for this test peer
// would depend on how it was built; the README promises go-libp2p's own name.
const agentVersion = "github.com/libp2p/go-libp2p"

// transport is one transport the peer can run: its go-libp2p option and how it spells a
// listen address. Only TCP exists for now; QUIC would be one more entry
// (libp2p.Transport(quic.NewTransport), "/ip4/%s/udp/%d/quic-v1") and a flag choosing it.
type transport struct {
	option     libp2p.Option
	listenAddr func(host string, port int) string
}

var tcpTransport = transport{
	option:     libp2p.Transport(tcp.NewTCPTransport),
	listenAddr: func(host string, port int) string { return fmt.Sprintf("/ip4/%s/tcp/%d", host, port) },
}

// securityOptions maps --security names to go-libp2p's security transports.
var securityOptions = map[string]libp2p.Option{
	"tls":   libp2p.Security(tls.ID, tls.New),
	"noise": libp2p.Security(noise.ID, noise.New),
}

// defaultSecurity is go-libp2p's default order (libp2p.DefaultSecurity).
var defaultSecurity = []string{"tls", "noise"}

// hostConfig is what the command line asks of the host.
type hostConfig struct {
	identity   crypto.PrivKey
	transports []transport
	listen     bool
	listenHost string
	listenPort int
	insecure   bool
	security   []string
}

// newHost builds the seed's makeBasicHost with the transports and security asked for; muxer
// (yamux), ping and identify stay go-libp2p's defaults.
//
// The one departure: no resource limits. go-libp2p's default limits (a few dozen inbound
// streams per protocol and peer, e.g. 64 + 4 per GiB of memory for echo-all) would reset the
// streams of the "100 concurrent streams" scenario; the perf implementation of test-plans
// runs without limits for the same reason.
func newHost(cfg hostConfig) (host.Host, error) {
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	if err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.identity),
		libp2p.DisableRelay(),
		libp2p.UserAgent(agentVersion),
		libp2p.ResourceManager(rm),
	}
	for _, t := range cfg.transports {
		opts = append(opts, t.option)
		if cfg.listen {
			opts = append(opts, libp2p.ListenAddrStrings(t.listenAddr(cfg.listenHost, cfg.listenPort)))
		}
	}
	if !cfg.listen {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	if cfg.insecure {
		opts = append(opts, libp2p.NoSecurity)
	} else {
		for _, name := range cfg.security {
			opts = append(opts, securityOptions[name])
		}
	}
	return libp2p.New(opts...)
}
