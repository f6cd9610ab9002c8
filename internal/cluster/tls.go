package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// checkTLSFiles reads o's TLS files, if any, and checks that they hold
// what they should: CAFile at least one PEM certificate, CertFile a PEM
// certificate and KeyFile the PEM private key that matches it. It does so
// before New connects: a bad file is a configuration error, not a NATS
// outage to poll alone through. Its errors never quote the files.
func checkTLSFiles(o Options) error {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("cluster: CertFile and KeyFile go together")
	}
	if o.CAFile != "" {
		raw, err := os.ReadFile(o.CAFile)
		if err != nil {
			return &FileError{Option: "CAFile", Err: err}
		}
		if !x509.NewCertPool().AppendCertsFromPEM(raw) {
			return &FileError{Option: "CAFile", Err: fmt.Errorf("%s holds no PEM certificate", o.CAFile)}
		}
	}
	if o.CertFile == "" {
		return nil
	}
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return &FileError{Option: "CertFile", Err: err}
	}
	block := firstBlock(certPEM, func(typ string) bool { return typ == "CERTIFICATE" })
	if block == nil {
		return &FileError{Option: "CertFile", Err: fmt.Errorf("%s holds no PEM certificate", o.CertFile)}
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return &FileError{Option: "CertFile", Err: fmt.Errorf("%s: %w", o.CertFile, err)}
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return &FileError{Option: "KeyFile", Err: err}
	}
	if firstBlock(keyPEM, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") }) == nil {
		return &FileError{Option: "KeyFile", Err: fmt.Errorf("%s holds no PEM private key", o.KeyFile)}
	}
	// The certificate parses: what is left to fail is the key, unparsable
	// or not the certificate's.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return &FileError{Option: "KeyFile", Err: fmt.Errorf("%s: %w", o.KeyFile, err)}
	}
	return nil
}

// firstBlock returns the first PEM block in raw whose type is wanted, or
// nil.
func firstBlock(raw []byte, wanted func(typ string) bool) *pem.Block {
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			return nil
		}
		if wanted(b.Type) {
			return b
		}
	}
}
