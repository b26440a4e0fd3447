// Package pki keeps the server's own certificate authority for the data
// plane across machines: the gateway's certificate and the node agents'
// client certificate, both signed by a CA that exists only in the server's
// state directory. Nothing else is trusted on either side, so neither a
// public CA nor the cluster's own certificates can stand in for them.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// GatewayName is the name in the gateway's certificate, which the agents
// check: the gateway's address may change, its name does not.
const GatewayName = "minilambda-gateway"

// Material is what the gateway and the agents need.
type Material struct {
	// Server is the gateway's certificate; ClientCAs trusts the agents'.
	Server    tls.Certificate
	ClientCAs *x509.CertPool
	// AgentBundle is the agents' PEM bundle: the CA, their certificate
	// and their key (PKCS #8).
	AgentBundle []byte
}

const validity = 10 * 365 * 24 * time.Hour

// LoadOrCreate reads the CA and the agents' bundle from dir, making them
// the first time, and signs a fresh gateway certificate. The CA's key
// stays in dir (0600): a server that restarts keeps trusting the agents
// it started.
func LoadOrCreate(dir string) (Material, error) {
	var m Material
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return m, fmt.Errorf("pki: %w", err)
	}
	caPath, keyPath, bundlePath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "agent.pem")
	caPEM, err := os.ReadFile(caPath)
	if errors.Is(err, os.ErrNotExist) {
		if err := create(caPath, keyPath, bundlePath); err != nil {
			return m, err
		}
		caPEM, err = os.ReadFile(caPath)
	}
	if err != nil {
		return m, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return m, fmt.Errorf("pki: %w", err)
	}
	if m.AgentBundle, err = os.ReadFile(bundlePath); err != nil {
		return m, fmt.Errorf("pki: %w", err)
	}
	ca, caKey, err := parse(caPEM, keyPEM)
	if err != nil {
		return m, err
	}
	m.ClientCAs = x509.NewCertPool()
	m.ClientCAs.AddCert(ca)
	certDER, key, err := sign(ca, caKey, GatewayName, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return m, err
	}
	m.Server = tls.Certificate{Certificate: [][]byte{certDER}, PrivateKey: key}
	return m, nil
}

func create(caPath, keyPath, bundlePath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "minilambda data plane CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ca, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	agentDER, agentKey, err := sign(ca, key, "minilambda-node-agent", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	agentKeyDER, err := x509.MarshalPKCS8PrivateKey(agentKey)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	bundle := append(append(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: agentDER})...),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: agentKeyDER})...)
	// The CA last: LoadOrCreate takes a directory with it as complete.
	for _, f := range []struct {
		path string
		b    []byte
	}{
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{bundlePath, bundle},
		{caPath, caPEM},
	} {
		if err := writeFile(f.path, f.b); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func parse(caPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("pki: the CA's files are not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: the CA: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: the CA's key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("pki: the CA's key is not ECDSA")
	}
	return ca, key, nil
}

func sign(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	return der, key, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// ServerConfig is the gateway's TLS configuration: TLS 1.3, HTTP/2, and
// only a client certificate the CA signed for client authentication.
func (m Material) ServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{m.Server},
		ClientCAs:    m.ClientCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
	}
}
