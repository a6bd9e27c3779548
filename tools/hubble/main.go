// hubble-replay: the real Hubble observer server (cilium's pkg/hubble/observer, the code behind
// every agent's and Relay's Observer service) serving GetFlows from flows read out of a
// `hubble observe -o json` file instead of the datapath. Used by netwarden's tests of its Hubble
// Relay client: the filters, field mask, since/follow semantics and TLS are the real ones.
//
//	hubble-replay --listen 127.0.0.1:4245 --flows FILE [--follow] [--tls-cert F --tls-key F [--tls-client-ca F]]
//
// With --follow, lines appended to FILE later are served too (polled every 20 ms). TLS files are
// read on every handshake, so a rotated certificate takes effect without a restart (as Relay's
// certloader does). It prints "ready <address>" on stdout once it serves.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	"github.com/cilium/cilium/pkg/hubble/container"
	"github.com/cilium/cilium/pkg/hubble/observer"
	"github.com/cilium/cilium/pkg/hubble/observer/namespace"
	"github.com/cilium/cilium/pkg/hubble/observer/observeroption"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	flows := flag.String("flows", "", "JSON-lines file of GetFlowsResponse records (hubble observe -o json)")
	follow := flag.Bool("follow", false, "keep reading lines appended to --flows")
	certFile := flag.String("tls-cert", "", "serving certificate (PEM); none: plaintext")
	keyFile := flag.String("tls-key", "", "serving key (PEM)")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	maxFlows := flag.Int("max-flows", 65535, "ring buffer size")
	version := flag.Bool("version", false, "print the cilium module this was built from and exit")
	flag.Parse()
	if *version {
		fmt.Println(ciliumVersion())
		return
	}

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	capacity, err := container.NewCapacity(*maxFlows)
	check(err)
	srv, err := observer.NewLocalServer(nil, namespace.NewManager(), log, observeroption.WithMaxFlows(capacity))
	check(err)

	var opts []grpc.ServerOption
	if *certFile != "" {
		opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS(*certFile, *keyFile, *clientCA))))
	}
	gs := grpc.NewServer(opts...)
	observerpb.RegisterObserverServer(gs, srv)
	lis, err := net.Listen("tcp", *listen)
	check(err)

	file, err := os.Open(*flows)
	check(err)
	reader := bufio.NewReaderSize(file, 1<<20)
	feed(srv.GetRingBuffer(), reader, false)
	fmt.Printf("ready %s\n", lis.Addr())
	if *follow {
		go feed(srv.GetRingBuffer(), reader, true)
	}
	check(gs.Serve(lis))
}

// feed writes every complete line of the reader into the ring; with follow it waits for more.
func feed(ring *container.Ring, reader *bufio.Reader, follow bool) {
	var pending []byte
	for {
		chunk, err := reader.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == io.EOF {
			if !follow {
				return
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		check(err)
		line := pending
		pending = nil
		var resp observerpb.GetFlowsResponse
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(line, &resp); err != nil {
			fmt.Fprintf(os.Stderr, "skipping a line that is not a GetFlowsResponse: %v\n", err)
			continue
		}
		var flow *flowpb.Flow = resp.GetFlow()
		if flow == nil {
			continue
		}
		stamp := flow.GetTime()
		if stamp == nil {
			stamp = timestamppb.Now()
		}
		if flow.NodeName == "" {
			flow.NodeName = resp.NodeName
		}
		ring.Write(&v1.Event{Timestamp: stamp, Event: flow})
	}
}

func serverTLS(certFile, keyFile, clientCA string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			return &cert, err
		},
	}
	if clientCA != "" {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pem, err := os.ReadFile(clientCA)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			c := cfg.Clone()
			c.GetConfigForClient = nil
			c.ClientCAs = pool
			return c, nil
		}
	}
	return cfg
}

// ciliumVersion is the cilium module version linked in, e.g. "cilium v1.20.2".
func ciliumVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/cilium/cilium" {
				return "cilium " + dep.Version
			}
		}
	}
	return "cilium (unknown)"
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
