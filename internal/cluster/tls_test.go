package cluster_test

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/cluster"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/watch"
)

// serverTLS says how startTLSNATS's server talks: plaintext, TLS, or TLS
// requiring client certificates signed by its CA (mTLS).
type serverTLS int

const (
	plaintext serverTLS = iota
	serverOnly
	mutual
)

// startTLSNATS starts an in-process NATS server with JetStream, its
// certificate signed by ca unless mode is plaintext, and returns its
// nats:// URL.
func startTLSNATS(t *testing.T, ca *testutil.CA, mode serverTLS) string {
	t.Helper()
	o := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	}
	if mode != plaintext {
		certPEM, keyPEM := ca.Issue(t, "nats", true)
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		o.TLS = true
		o.TLSTimeout = 2
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if mode == mutual {
			o.TLSVerify = true
			o.TLSConfig.ClientCAs = ca.Pool
			o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(patience) {
		t.Fatal("nats-server not ready")
	}
	return fmt.Sprintf("nats://%s", s.Addr().(*net.TCPAddr))
}

// TestTLS connects replicas to NATS over TLS and mTLS with the CA and
// client certificate given, or not, and checks which share leases and
// which poll alone.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca, otherCA := testutil.NewCA(t, "batchgate test CA"), testutil.NewCA(t, "some other CA")
	dir := t.TempDir()
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	otherCAFile := testutil.WriteFile(t, dir, "other-ca.pem", otherCA.PEM)
	c, k := ca.Issue(t, "replica", false)
	certFile, keyFile := testutil.WriteFile(t, dir, "client.pem", c), testutil.WriteFile(t, dir, "client-key.pem", k)
	sc, sk := otherCA.Issue(t, "replica", false) // same name, wrong CA
	strangerCert, strangerKey := testutil.WriteFile(t, dir, "stranger.pem", sc), testutil.WriteFile(t, dir, "stranger-key.pem", sk)

	tests := []struct {
		name          string
		server        serverTLS
		scheme        string // of the URL: "nats" or "tls"
		ca, cert, key string
		shared        bool
	}{
		{name: "TLS with the CA", server: serverOnly, scheme: "nats", ca: caFile, shared: true},
		{name: "TLS with the CA, tls:// URL", server: serverOnly, scheme: "tls", ca: caFile, shared: true},
		{name: "TLS without the CA", server: serverOnly, scheme: "tls"},
		{name: "TLS with another CA", server: serverOnly, scheme: "nats", ca: otherCAFile},
		{name: "mTLS without a client certificate", server: mutual, scheme: "nats", ca: caFile},
		{name: "mTLS with the client certificate", server: mutual, scheme: "nats", ca: caFile, cert: certFile, key: keyFile, shared: true},
		{name: "mTLS with a certificate of another CA", server: mutual, scheme: "nats", ca: caFile, cert: strangerCert, key: strangerKey},
		{name: "the CA turns TLS on: a plaintext server is refused", server: plaintext, scheme: "nats", ca: caFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := strings.Replace(startTLSNATS(t, ca, tt.server), "nats://", tt.scheme+"://", 1)
			cl, err := cluster.New(cluster.Options{
				URL: url, CAFile: tt.ca, CertFile: tt.cert, KeyFile: tt.key,
				Bucket: "tls", PollInterval: 100 * time.Millisecond, ReplicaID: "r",
				OpTimeout: time.Second, ReconnectWait: 50 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			u := newUpstream()
			hub := watch.New(fetcher{u: u, replica: "r"}, watch.Options{
				PollInterval: 100 * time.Millisecond, PollContext: pollContext, Coordinator: cl,
			})
			t.Cleanup(func() { hub.Close(); cl.Close() })
			k := watch.Key{BatchID: "batch_tls"}
			if tt.shared {
				waitFor(t, "cluster shared", func() bool { return cl.Stats().Shared })
				s := subscribe(t, &replica{name: "r", hub: hub, cl: cl}, k)
				waitFor(t, "the lease", func() bool { st := cl.Stats(); return st.Leases == 1 && st.Acquired > 0 })
				u.set("", k.BatchID, 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
				waitCompleted(t, s, 3, "the lease holder's watcher")
				waitFor(t, "a shared state written", func() bool { return cl.Stats().StatesWritten > 0 })
				if st := cl.Stats(); st.Unavailable != 0 {
					t.Fatalf("%d Acquire calls refused with NATS reachable over TLS", st.Unavailable)
				}
				return
			}
			// The handshake fails at every attempt: the replica polls
			// alone, and goes on doing so.
			s := subscribe(t, &replica{name: "r", hub: hub, cl: cl}, k)
			waitFor(t, "Acquire refused", func() bool { return cl.Stats().Unavailable > 0 })
			u.set("", k.BatchID, 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
			waitCompleted(t, s, 3, "the lone poller's watcher")
			time.Sleep(10 * 50 * time.Millisecond) // ten reconnect attempts
			if st := cl.Stats(); st.Shared || st.Leases != 0 || st.Acquired != 0 {
				t.Fatalf("Stats = %+v, want polling alone", st)
			}
		})
	}
}

// TestTLSBadFiles: New fails at once, naming the option, for TLS files
// that are missing or do not hold the PEM they should, and never repeats
// what they hold.
func TestTLSBadFiles(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "batchgate test CA")
	dir := t.TempDir()
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	c, k := ca.Issue(t, "replica", false)
	certFile, keyFile := testutil.WriteFile(t, dir, "client.pem", c), testutil.WriteFile(t, dir, "client-key.pem", k)
	_, k2 := ca.Issue(t, "other", false)
	otherKey := testutil.WriteFile(t, dir, "other-key.pem", k2)
	junk := testutil.WriteFile(t, dir, "junk.pem", []byte("sekrit-junk, not PEM\n"))
	badDER := testutil.WriteFile(t, dir, "bad-der.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("sekrit-der")}))
	missing := filepath.Join(dir, "nope.pem")

	// Nobody listens: New must fail before it tries.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + lis.Addr().String()
	lis.Close()

	tests := []struct {
		name          string
		ca, cert, key string
		option        string // of the FileError; "": another error
		errText       string
	}{
		{name: "CA missing", ca: missing, option: "CAFile", errText: "nope.pem"},
		{name: "CA not PEM", ca: junk, option: "CAFile", errText: "no PEM certificate"},
		{name: "CA holds a key", ca: keyFile, option: "CAFile", errText: "no PEM certificate"},
		{name: "certificate without key", ca: caFile, cert: certFile, errText: "CertFile and KeyFile go together"},
		{name: "key without certificate", key: keyFile, errText: "CertFile and KeyFile go together"},
		{name: "certificate missing", cert: missing, key: keyFile, option: "CertFile", errText: "nope.pem"},
		{name: "certificate not PEM", cert: junk, key: keyFile, option: "CertFile", errText: "no PEM certificate"},
		{name: "certificate and key switched", cert: keyFile, key: certFile, option: "CertFile", errText: "no PEM certificate"},
		{name: "certificate unparsable", cert: badDER, key: keyFile, option: "CertFile", errText: "bad-der.pem"},
		{name: "key missing", cert: certFile, key: missing, option: "KeyFile", errText: "nope.pem"},
		{name: "key not PEM", cert: certFile, key: junk, option: "KeyFile", errText: "no PEM private key"},
		{name: "key of another certificate", cert: certFile, key: otherKey, option: "KeyFile", errText: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cl, err := cluster.New(cluster.Options{URL: url, CAFile: tt.ca, CertFile: tt.cert, KeyFile: tt.key})
			if err == nil {
				cl.Close()
				t.Fatal("New succeeded")
			}
			var fe *cluster.FileError
			switch {
			case tt.option == "" && errors.As(err, &fe):
				t.Fatalf("err = %v, a FileError", err)
			case tt.option != "" && (!errors.As(err, &fe) || fe.Option != tt.option):
				t.Fatalf("err = %v, want a FileError of %s", err, tt.option)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("err = %v, want it to say %q", err, tt.errText)
			}
			for _, leak := range []string{"sekrit", "BEGIN", string(k[40:60]), string(k2[40:60])} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("err %q repeats the file's contents (%q)", err, leak)
				}
			}
		})
	}
	// Good files connect, or at least try: New succeeds.
	cl, err := cluster.New(cluster.Options{URL: url, CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatalf("New with good files: %v", err)
	}
	cl.Close()
}
