// A single-member etcd for the test suite's real tier, built on etcd's embed package.
//
// It takes the flags tests/envtest.py passes (the same spelling as the etcd binary's), and
// stops cleanly on SIGTERM or SIGINT so the API server sees its store close, not vanish.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

const startTimeout = 60 * time.Second

func urls(flagName, value string) []url.URL {
	var out []url.URL
	for _, raw := range strings.Split(value, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			fmt.Fprintf(os.Stderr, "--%s: %q is not a URL such as http://127.0.0.1:2379\n", flagName, raw)
			os.Exit(2)
		}
		out = append(out, *u)
	}
	return out
}

func main() {
	name := flag.String("name", "default", "human-readable name for this member")
	dataDir := flag.String("data-dir", "default.etcd", "path to the data directory")
	listenClient := flag.String("listen-client-urls", "http://127.0.0.1:2379", "URLs to listen on for client traffic")
	advertiseClient := flag.String("advertise-client-urls", "http://127.0.0.1:2379", "client URLs to advertise")
	listenPeer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "URLs to listen on for peer traffic")
	noFsync := flag.Bool("unsafe-no-fsync", false, "disables fsync: unsafe, for throw-away test data only")
	quotaBytes := flag.Int64("quota-backend-bytes", 0, "backend size before an alarm is raised (0: etcd's default)")
	flag.Parse()

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = urls("listen-client-urls", *listenClient)
	cfg.AdvertiseClientUrls = urls("advertise-client-urls", *advertiseClient)
	cfg.ListenPeerUrls = urls("listen-peer-urls", *listenPeer)
	// A lone member advertises the peer address it listens on; the default (localhost:2380)
	// would clash with any other etcd on the machine.
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = *noFsync
	cfg.QuotaBackendBytes = *quotaBytes
	cfg.LogOutputs = []string{"stderr"}

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd did not start: %v\n", err)
		os.Exit(1)
	}
	defer server.Close()

	select {
	case <-server.Server.ReadyNotify():
	case <-time.After(startTimeout):
		fmt.Fprintf(os.Stderr, "etcd was not ready after %s\n", startTimeout)
		os.Exit(1)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case err := <-server.Err():
		fmt.Fprintf(os.Stderr, "etcd failed: %v\n", err)
		os.Exit(1)
	}
}
