package pki_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/pki"
)

// agentConfig is the TLS configuration a node agent builds from its
// bundle.
func agentConfig(t *testing.T, bundle []byte) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	var leaf [][]byte
	var keyDER []byte
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if c.IsCA {
				roots.AddCert(c)
			} else {
				leaf = append(leaf, b.Bytes)
			}
		case "PRIVATE KEY":
			keyDER = b.Bytes
		}
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil || len(leaf) != 1 {
		t.Fatalf("the bundle: %d certificates, key %v", len(leaf), err)
	}
	return &tls.Config{RootCAs: roots, ServerName: pki.GatewayName, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: leaf, PrivateKey: key}}}
}

// handshake reports the error of a TLS handshake of client against server.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	// A loopback connection, not a pipe: its buffers let either side
	// finish its writes after the other gave up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(a, server)
		herr := s.Handshake()
		s.Close()
		done <- herr
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(b, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the server's verdict on the client's certificate
		// comes after the client's handshake: a read sees it.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, clientErr = c.Read(make([]byte, 1))
		if errors.Is(clientErr, io.EOF) {
			clientErr = nil
		}
	}
	c.Close()
	return <-done, clientErr
}

// TestLoadOrCreate: the agents' bundle authenticates to the gateway and
// the gateway to them; the CA survives a reload, and nothing else is
// trusted either way.
func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	m, err := pki.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "agent.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	if sErr, cErr := handshake(t, m.ServerConfig(), agentConfig(t, m.AgentBundle)); sErr != nil || cErr != nil {
		t.Fatalf("the agent's bundle against the gateway: %v / %v", sErr, cErr)
	}
	again, err := pki.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.AgentBundle, m.AgentBundle) {
		t.Error("a reload made another bundle: the running agents would be refused")
	}
	if sErr, cErr := handshake(t, again.ServerConfig(), agentConfig(t, m.AgentBundle)); sErr != nil || cErr != nil {
		t.Errorf("the first bundle against the reloaded gateway: %v / %v", sErr, cErr)
	}

	// Another server's material is trusted by neither side.
	other, err := pki.LoadOrCreate(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	if sErr, _ := handshake(t, m.ServerConfig(), agentConfig(t, other.AgentBundle)); sErr == nil {
		t.Error("the gateway took another CA's agent")
	}
	if _, cErr := handshake(t, other.ServerConfig(), agentConfig(t, m.AgentBundle)); cErr == nil {
		t.Error("an agent took another CA's gateway")
	}
	// A client without a certificate is refused.
	noCert := agentConfig(t, m.AgentBundle)
	noCert.Certificates = nil
	if sErr, _ := handshake(t, m.ServerConfig(), noCert); sErr == nil {
		t.Error("the gateway took a client without a certificate")
	}
}
