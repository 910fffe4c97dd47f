// Command go-peer is Plait's go-libp2p test peer: the go-libp2p echo example (the seed) plus
// the test protocols and the control protocol of ../README.md, which is its contract.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// Exit codes (README: "Exit codes").
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// dialTimeout bounds the -d echo run as a whole.
const dialTimeout = 30 * time.Second

type options struct {
	listenPort int
	listenHost string
	dial       string
	insecure   bool
	security   []string
	seed       int64
	keyType    string
	rsaBits    int
	exportKey  string
	perf       bool
	control    bool
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-peer: "+format+"\n", args...)
	fmt.Fprintln(os.Stderr, "usage: go-peer [-l PORT] [--host IP] [-d MULTIADDR] [--insecure] [--security LIST] [--seed N]")
	fmt.Fprintln(os.Stderr, "               [--key rsa|ed25519|secp256k1|ecdsa] [--rsa-bits BITS] [--export-key PATH] [--perf] [--control]")
	os.Exit(exitUsage)
}

func parseOptions(args []string) options {
	fs := flag.NewFlagSet("go-peer", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	var o options
	fs.IntVar(&o.listenPort, "l", -1, "listen on /ip4/HOST/tcp/PORT (0: any free port)")
	fs.StringVar(&o.listenHost, "host", "127.0.0.1", "the IPv4 address to listen on")
	fs.StringVar(&o.dial, "d", "", "dial MULTIADDR and run the echo example's client")
	fs.BoolVar(&o.insecure, "insecure", false, "/plaintext/2.0.0 only")
	security := fs.String("security", strings.Join(defaultSecurity, ","), "security protocols in preference order: tls, noise")
	fs.Int64Var(&o.seed, "seed", 0, "deterministic identity (0: random)")
	fs.StringVar(&o.keyType, "key", keyRSA, "identity key type: rsa, ed25519, secp256k1, ecdsa")
	fs.IntVar(&o.rsaBits, "rsa-bits", minRSABits, "RSA modulus size in bits")
	fs.StringVar(&o.exportKey, "export-key", "", "write the private key (libp2p protobuf) to PATH")
	fs.BoolVar(&o.perf, "perf", false, "also serve /perf/1.0.0")
	fs.BoolVar(&o.control, "control", false, "read control commands from stdin")
	if err := fs.Parse(args); err != nil {
		os.Exit(exitUsage) // the flag package printed the reason
	}
	if fs.NArg() > 0 {
		usage("unexpected argument %q", fs.Arg(0))
	}
	if o.listenPort < -1 || o.listenPort > 65535 {
		usage("-l %d: not a port", o.listenPort)
	}
	if ip, err := ma.NewComponent("ip4", o.listenHost); err != nil || ip == nil {
		usage("--host %q: not an IPv4 address", o.listenHost)
	}
	if !slices.Contains([]string{keyRSA, keyEd25519, keySecp256k1, keyECDSA}, o.keyType) {
		usage("--key %q: one of rsa, ed25519, secp256k1, ecdsa", o.keyType)
	}
	if o.rsaBits < minRSABits || o.rsaBits > maxRSABits {
		usage("--rsa-bits %d: go-libp2p accepts %d to %d", o.rsaBits, minRSABits, maxRSABits)
	}
	for _, name := range strings.Split(*security, ",") {
		if _, ok := securityOptions[name]; !ok {
			usage("--security: unknown protocol %q (tls, noise)", name)
		}
		if slices.Contains(o.security, name) {
			usage("--security: %q twice", name)
		}
		o.security = append(o.security, name)
	}
	if o.listenPort < 0 && o.dial == "" && !o.control {
		usage("nothing to do: give -l, -d or --control")
	}
	return o
}

func main() {
	log.SetOutput(os.Stderr)
	log.SetPrefix("go-peer: ")
	o := parseOptions(os.Args[1:])

	priv, err := makeIdentity(o.keyType, o.rsaBits, o.seed)
	if err != nil {
		log.Printf("identity: %v", err)
		os.Exit(exitFailed)
	}
	if o.exportKey != "" {
		if err := exportKey(priv, o.exportKey); err != nil {
			log.Printf("--export-key: %v", err)
			os.Exit(exitFailed)
		}
	}
	h, err := newHost(hostConfig{
		identity:   priv,
		transports: []transport{tcpTransport},
		listen:     o.listenPort >= 0,
		listenHost: o.listenHost,
		listenPort: max(o.listenPort, 0),
		insecure:   o.insecure,
		security:   o.security,
	})
	if err != nil {
		log.Printf("host: %v", err)
		os.Exit(exitFailed)
	}
	ids := watchIdentify(h)
	serve(h, o.perf)

	if o.listenPort >= 0 {
		addr, err := listenAddr(h)
		if err != nil {
			log.Printf("listen: %v", err)
			os.Exit(exitFailed)
		}
		fmt.Println(addr)
	}
	if o.dial != "" {
		if err := runEchoClient(h, o.dial); err != nil {
			log.Printf("%v", err)
			os.Exit(exitFailed)
		}
		if !o.control {
			os.Exit(exitOK)
		}
	}
	if o.control {
		runControl(h, ids, os.Stdin, os.Stdout)
		closeHost(h)
		os.Exit(exitOK)
	}
	select {} // serve until killed
}

func exportKey(priv crypto.PrivKey, path string) error {
	b, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// listenAddr is the first listen address with /p2p/ (the seed's getHostAddress).
func listenAddr(h host.Host) (string, error) {
	addrs := h.Network().ListenAddresses()
	if len(addrs) == 0 {
		return "", fmt.Errorf("no listen address")
	}
	return fmt.Sprintf("%s/p2p/%s", addrs[0], h.ID()), nil
}

// runEchoClient is the seed's dialer: open /echo/1.0.0, write the line, close the write side,
// read the reply to EOF and print it verbatim.
func runEchoClient(h host.Host, target string) error {
	maddr, err := ma.NewMultiaddr(target)
	if err != nil {
		return fmt.Errorf("-d %q: %w", target, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(maddr)
	if err != nil {
		return fmt.Errorf("-d %q: %w", target, err)
	}
	h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	reply, err := echo(ctx, h, info.ID)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(reply)
	return err
}

// echo opens /echo/1.0.0 to p, writes the seed's line, closes the write side and returns the
// reply read to EOF.
func echo(ctx context.Context, h host.Host, p peer.ID) ([]byte, error) {
	s, err := h.NewStream(ctx, p, echoProtocol)
	if err != nil {
		return nil, fmt.Errorf("new stream: %w", err)
	}
	defer s.Close()
	defer stopOnCancel(ctx, s)()
	if _, err := s.Write([]byte("Hello, world!\n")); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("close write: %w", err)
	}
	out, err := io.ReadAll(s)
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("read reply: %w", err)
	}
	return out, nil
}

// closeHost closes the host, giving up after a second (exiting closes the sockets anyway).
func closeHost(h host.Host) {
	done := make(chan struct{})
	go func() {
		_ = h.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
