package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const testToken = "0123456789abcdef0123456789abcdef"

// testHost is where the tests' clusters listen: loopback, as lab's MUX_HOST, and not 127.0.0.1, so a
// listener bound to every interface would show.
const testHost = "127.2.0.1"

type ca struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
	key             crypto.Signer
}

func newCA(t *testing.T, name string, rsaKey bool) ca {
	t.Helper()
	var key any
	var keyDER []byte
	var err error
	if rsaKey {
		k, e := rsa.GenerateKey(rand.Reader, 2048)
		if e != nil {
			t.Fatal(e)
		}
		key, keyDER = k, x509.MarshalPKCS1PrivateKey(k)
	} else {
		k, e := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if e != nil {
			t.Fatal(e)
		}
		key = k
		if keyDER, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubernetes", Organization: []string{name}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	pub := key.(crypto.Signer).Public()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	keyType := "RSA PRIVATE KEY"
	if !rsaKey {
		keyType = "PRIVATE KEY"
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: keyType, Bytes: keyDER}),
		cert:    cert,
		key:     key.(crypto.Signer),
	}
}

// clientCert is a client certificate c signed, as in an admin kubeconfig (system:masters).
func clientCert(t *testing.T, c ca) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// freePort asks the kernel for a port nothing listens on.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", testHost+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func startServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, Options{Host: testHost, MinPort: 1024, MaxPort: 65535, Token: []byte(testToken)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
		cancel()
	})
	return srv, hs
}

func call(t *testing.T, hs *httptest.Server, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, hs.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

// namespaces lists the namespaces of the cluster at port, trusting only its CA, with the client
// certificate given (none when nil); host, when not empty, is the request's Host header.
func namespaces(t *testing.T, port int32, c ca, cert *tls.Certificate, host ...string) ([]string, error) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.certPEM) {
		t.Fatal("bad CA PEM")
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	req, err := http.NewRequest("GET", fmt.Sprintf("https://%s:%d/api/v1/namespaces", testHost, port), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(host) > 0 {
		req.Host = host[0]
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	names := []string{}
	for _, i := range list.Items {
		names = append(names, i.Metadata.Name)
	}
	sort.Strings(names)
	return names, nil
}

func TestAuthRefused(t *testing.T) {
	_, hs := startServer(t)
	for _, token := range []string{"", "wrong", testToken[:len(testToken)-1]} {
		for _, path := range []string{"/v1/health", "/v1/clusters"} {
			if code, _ := call(t, hs, "GET", path, token, nil); code != http.StatusUnauthorized {
				t.Fatalf("GET %s with token %q: HTTP %d, want 401", path, token, code)
			}
		}
		code, _ := call(t, hs, "POST", "/v1/clusters", token, map[string]any{"name": "x", "port": 1})
		if code != http.StatusUnauthorized {
			t.Fatalf("register with token %q: HTTP %d, want 401", token, code)
		}
	}
	if code, _ := call(t, hs, "GET", "/v1/health", testToken, nil); code != http.StatusOK {
		t.Fatalf("health with the token: HTTP %d", code)
	}
}

func TestRegisterListUnregister(t *testing.T) {
	srv, hs := startServer(t)
	cas := map[string]ca{"test-1": newCA(t, "test-1", true), "test-2": newCA(t, "test-2", true)}
	ports := map[string]int32{"test-1": freePort(t), "test-2": freePort(t)}
	for i, name := range []string{"test-1", "test-2"} {
		body := map[string]any{
			"name": name, "index": i + 1, "port": ports[name],
			"caCert": string(cas[name].certPEM), "caKey": string(cas[name].keyPEM),
		}
		if code, out := call(t, hs, "POST", "/v1/clusters", testToken, body); code != http.StatusOK {
			t.Fatalf("register %s: HTTP %d %s", name, code, out)
		}
		// again, same CA and port: a no-op
		if code, out := call(t, hs, "POST", "/v1/clusters", testToken, body); code != http.StatusOK {
			t.Fatalf("re-register %s: HTTP %d %s", name, code, out)
		}
	}
	// another cluster on a taken port is refused
	other := newCA(t, "test-3", true)
	code, _ := call(t, hs, "POST", "/v1/clusters", testToken, map[string]any{
		"name": "test-3", "port": ports["test-1"], "caCert": string(other.certPEM), "caKey": string(other.keyPEM),
	})
	if code != http.StatusConflict {
		t.Fatalf("register on a taken port: HTTP %d, want 409", code)
	}

	code, out := call(t, hs, "GET", "/v1/clusters", testToken, nil)
	var listed []Cluster
	if err := json.Unmarshal(out, &listed); code != http.StatusOK || err != nil {
		t.Fatalf("list: HTTP %d %s %v", code, out, err)
	}
	if len(listed) != 2 || listed[0].Name != "test-1" || listed[1].Port != ports["test-2"] || listed[1].Index != 2 {
		t.Fatalf("list: %+v", listed)
	}

	for name, c := range cas {
		got, err := namespaces(t, ports[name], c, clientCert(t, c))
		if err != nil {
			t.Fatalf("%s namespaces: %v", name, err)
		}
		want := []string{"default", "kube-node-lease", "kube-public", "kube-system"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s namespaces %v, want %v", name, got, want)
		}
	}
	// test-1's CA does not verify test-2's serving certificate: each cluster has its own
	if _, err := namespaces(t, ports["test-2"], cas["test-1"], clientCert(t, cas["test-1"])); err == nil {
		t.Fatal("test-2 served a certificate test-1's CA verifies")
	}

	if code, out := call(t, hs, "DELETE", "/v1/clusters/test-1", testToken, nil); code != http.StatusOK {
		t.Fatalf("unregister: HTTP %d %s", code, out)
	}
	if code, _ := call(t, hs, "DELETE", "/v1/clusters/test-1", testToken, nil); code != http.StatusOK {
		t.Fatalf("unregister again: HTTP %d, want 200 (idempotent)", code)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", testHost, ports["test-1"]), time.Second); err == nil {
		conn.Close()
		t.Fatal("test-1's port still accepts connections after unregister")
	}
	err := srv.manager.GetResourceGroup("test-1").GetClient().List(context.Background(), &corev1.NamespaceList{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("test-1's resource group (its objects) survived unregister: %v", err)
	}
	if _, err := namespaces(t, ports["test-2"], cas["test-2"], clientCert(t, cas["test-2"])); err != nil {
		t.Fatalf("test-2 after test-1 left: %v", err)
	}
	_, out = call(t, hs, "GET", "/v1/clusters", testToken, nil)
	listed = nil
	_ = json.Unmarshal(out, &listed)
	if len(listed) != 1 || listed[0].Name != "test-2" {
		t.Fatalf("list after unregister: %+v", listed)
	}
}

func TestRegisterRefusesBadInput(t *testing.T) {
	_, hs := startServer(t)
	good := newCA(t, "good", true)
	port := freePort(t)
	cases := map[string]map[string]any{
		"not a CA":      {"name": "nc", "port": port, "caCert": string(leafPEM(t, good)), "caKey": string(good.keyPEM)},
		"bad name":      {"name": "Bad_Name", "port": port, "caCert": string(good.certPEM), "caKey": string(good.keyPEM)},
		"mismatched":    {"name": "mm", "port": port, "caCert": string(good.certPEM), "caKey": string(newCA(t, "o", true).keyPEM)},
		"unknown field": {"name": "uf", "port": port, "nope": 1},
	}
	for what, body := range cases {
		if code, out := call(t, hs, "POST", "/v1/clusters", testToken, body); code != http.StatusBadRequest {
			t.Fatalf("%s: HTTP %d %s, want 400", what, code, out)
		}
	}
}

func TestRegisterFromFiles(t *testing.T) {
	_, hs := startServer(t)
	c := newCA(t, "files", true)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, c.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	body := map[string]any{"name": "files", "port": port, "caCertFile": certFile, "caKeyFile": keyFile}
	if code, out := call(t, hs, "POST", "/v1/clusters", testToken, body); code != http.StatusOK {
		t.Fatalf("register from files: HTTP %d %s", code, out)
	}
	if _, err := namespaces(t, port, c, clientCert(t, c)); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFileMustBePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken(path); err == nil {
		t.Fatal("a 0644 token file was accepted")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readToken(path)
	if err != nil || string(got) != testToken {
		t.Fatalf("readToken: %q %v", got, err)
	}
	if _, err := loopbackListener("0.0.0.0:0"); err == nil {
		t.Fatal("a control address on every interface was accepted")
	}
}

// leafPEM is a non-CA certificate for c's own key (a register must refuse it as a CA).
func leafPEM(t *testing.T, c ca) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, c.key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func register(t *testing.T, hs *httptest.Server, name string, port int32, c ca) {
	t.Helper()
	body := map[string]any{"name": name, "port": port, "caCert": string(c.certPEM), "caKey": string(c.keyPEM)}
	if code, out := call(t, hs, "POST", "/v1/clusters", testToken, body); code != http.StatusOK {
		t.Fatalf("register %s: HTTP %d %s", name, code, out)
	}
}

// handshake dials the cluster at port over TLS (trusting c) with the client certificate given, and
// reads once: TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
func handshake(t *testing.T, port int32, c ca, cert *tls.Certificate) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(c.cert)
	conf := &tls.Config{RootCAs: pool, ServerName: testHost, MinVersion: tls.VersionTLS12}
	if cert != nil {
		// always sent: Go's client would otherwise hold back a certificate the server's
		// CertificateRequest names no CA for, and the test would not show the server refusing it
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("%s:%d", testHost, port), conf)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		return fmt.Errorf("answer %q", buf)
	}
	return nil
}

// TestClientCertificateRequired: only a client certificate signed by the cluster's own CA gets in.
func TestClientCertificateRequired(t *testing.T) {
	_, hs := startServer(t)
	one, two := newCA(t, "one", true), newCA(t, "two", true)
	p1, p2 := freePort(t), freePort(t)
	register(t, hs, "one", p1, one)
	register(t, hs, "two", p2, two)

	err := handshake(t, p1, one, nil)
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("no client certificate: %v, want the server to refuse the handshake", err)
	}
	if _, err := namespaces(t, p1, one, nil); err == nil {
		t.Fatal("an HTTP client without a certificate was served")
	}
	err = handshake(t, p1, one, clientCert(t, two))
	if err == nil || !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("another cluster's client certificate: %v, want the server to refuse it", err)
	}
	if err := handshake(t, p1, one, clientCert(t, one)); err != nil {
		t.Fatalf("the cluster's own client certificate: %v", err)
	}
	if err := handshake(t, p2, two, clientCert(t, two)); err != nil {
		t.Fatalf("two's own client certificate: %v", err)
	}
}

// TestHostHeaderCannotCrossClusters: the Host header names nothing; the listener decides the cluster.
func TestHostHeaderCannotCrossClusters(t *testing.T) {
	srv, hs := startServer(t)
	one, two := newCA(t, "one", true), newCA(t, "two", true)
	p1, p2 := freePort(t), freePort(t)
	register(t, hs, "one", p1, one)
	register(t, hs, "two", p2, two)
	only := &corev1.Namespace{}
	only.Name = "only-in-two"
	if err := srv.manager.GetResourceGroup("two").GetClient().Create(context.Background(), only); err != nil {
		t.Fatal(err)
	}
	got, err := namespaces(t, p1, one, clientCert(t, one), fmt.Sprintf("%s:%d", testHost, p2))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		if n == "only-in-two" {
			t.Fatalf("one's listener served two's objects for Host %s:%d: %v", testHost, p2, got)
		}
	}
	got, err = namespaces(t, p2, two, clientCert(t, two))
	if err != nil || !strings.Contains(fmt.Sprint(got), "only-in-two") {
		t.Fatalf("two's own namespaces: %v %v", got, err)
	}
}

// TestListenersLoopbackOnly: a cluster's listener is bound to the host address alone, and the server
// refuses a host that is not loopback.
func TestListenersLoopbackOnly(t *testing.T) {
	srv, hs := startServer(t)
	c := newCA(t, "lo", true)
	port := freePort(t)
	register(t, hs, "lo", port, c)
	srv.lock.Lock()
	addr := srv.clusters["lo"].listener.Addr().String()
	srv.lock.Unlock()
	if want := fmt.Sprintf("%s:%d", testHost, port); addr != want {
		t.Fatalf("listener on %s, want %s", addr, want)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		conn.Close()
		t.Fatalf("port %d answers on 127.0.0.1 too: the listener is not bound to %s alone", port, testHost)
	}
	for _, host := range []string{"0.0.0.0", "", "10.0.0.1", "::"} {
		if _, err := NewServer(context.Background(), Options{Host: host, Token: []byte(testToken)}); err == nil {
			t.Fatalf("NewServer accepted cluster host %q", host)
		}
	}
	// with ExternalHost: one unicast address (a backing host's), never a wildcard or a name
	for _, host := range []string{"0.0.0.0", "", "::", "224.0.0.1", "backing-1"} {
		if err := checkHost(host, true); err == nil {
			t.Fatalf("checkHost accepted external cluster host %q", host)
		}
	}
	for _, host := range []string{"10.0.0.1", "192.168.122.10", "fd00::1", testHost} {
		if err := checkHost(host, true); err != nil {
			t.Fatalf("checkHost refused external cluster host %q: %v", host, err)
		}
	}
}

// TestECDSACA: a cluster whose CA is ECDSA (lab's default) is served like an RSA one.
func TestECDSACA(t *testing.T) {
	_, hs := startServer(t)
	c := newCA(t, "ec", false)
	port := freePort(t)
	register(t, hs, "ec", port, c)
	got, err := namespaces(t, port, c, clientCert(t, c))
	if err != nil || len(got) != 4 {
		t.Fatalf("ECDSA cluster namespaces: %v %v", got, err)
	}
	if err := handshake(t, port, c, clientCert(t, newCA(t, "other-ec", false))); err == nil {
		t.Fatal("another ECDSA CA's client certificate was let in")
	}
}

// TestRestoreFromStateFile: a second process on the same state file serves the clusters the first
// had registered (and not unregistered) at the same addresses with the same CAs, with a fresh store.
func TestRestoreFromStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "clusters.json")
	one, two, three := newCA(t, "one", true), newCA(t, "two", false), newCA(t, "three", true)
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)

	ctx, cancel := context.WithCancel(context.Background())
	first, err := NewServer(ctx, Options{Host: testHost, MinPort: 1024, MaxPort: 65535, Token: []byte(testToken), StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]struct {
		port int32
		c    ca
	}{"one": {p1, one}, "two": {p2, two}, "three": {p3, three}} {
		req := registerRequest{Name: name, Port: r.port, CACert: string(r.c.certPEM), CAKey: string(r.c.keyPEM)}
		if _, err := first.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Unregister("three"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(state); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", st, err)
	}
	_ = first.Close() // what a kill leaves: the state file, no listener
	cancel()
	if _, err := namespaces(t, p1, one, clientCert(t, one)); err == nil {
		t.Fatal("one still served after Close")
	}

	second, err := NewServer(context.Background(), Options{Host: testHost, MinPort: 1024, MaxPort: 65535, Token: []byte(testToken), StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	n, err := second.Restore(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("Restore: %d %v, want 2 clusters", n, err)
	}
	for _, c := range []struct {
		port int32
		c    ca
	}{{p1, one}, {p2, two}} {
		got, err := namespaces(t, c.port, c.c, clientCert(t, c.c))
		if err != nil || len(got) != 4 {
			t.Fatalf("port %d after restore: %v %v", c.port, got, err)
		}
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", testHost, p3), time.Second); err == nil {
		conn.Close()
		t.Fatal("an unregistered cluster came back")
	}
	if !second.started.After(first.started) {
		t.Fatal("the second server reports the first one's start time")
	}
}
