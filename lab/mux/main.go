// Command lab-mux serves the workload API of many clusters from one process: lab's `mux` backing.
//
// It is a thin serving layer over Cluster API's in-memory API server library
// (sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/runtime and .../pkg/server/api), imported
// at a pinned version, never copied: the library's API server handler answers the Kubernetes API from
// an in-memory resource group per cluster. The library's WorkloadClustersMux is not used: it listens on
// every interface, checks no client certificate and opens an unauthenticated debug server. This
// program owns the listeners instead: one per cluster on the address lab gives it (loopback; a backing
// host's own address with --external-host), TLS with a
// serving certificate it signs with the cluster's CA, and a client certificate signed by that same CA
// required on every connection (the admin kubeconfig, CAPI's <cluster>-kubeconfig), so holding one
// cluster's credentials opens no other cluster. Around that, what lab needs: a control API on
// loopback only, authenticated by a token, with register, unregister (listener, connections and
// objects gone), list and health; the port of each cluster is chosen by lab (deterministic from the
// cluster's index, lab.naming.mux_endpoint), so endpoints are stable.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	inmemoryruntime "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/runtime"
	inmemoryapi "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/server/api"
)

// defaultNamespaces are what a fresh kube-apiserver creates, so a cluster looks like one to clients.
var defaultNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// servingCertValidity bounds a serving certificate's life (it is made again at every register, so
// at every start of the process); it never outlives the CA.
const servingCertValidity = 365 * 24 * time.Hour

// Options configure a Server.
type Options struct {
	// Host is the address every cluster's listener binds and its serving certificate names: loopback,
	// unless ExternalHost.
	Host string
	// ExternalHost lets Host be a specific address other than loopback: on a backing host, the address
	// the management cluster reaches (lab's process backing host). Never a wildcard (0.0.0.0, ::): each
	// listener still binds that one address, and still lets in only its own CA's client certificates.
	ExternalHost bool
	// MinPort and MaxPort bound the ports clusters may be registered on.
	MinPort, MaxPort int32
	// Token authenticates every control API call (Authorization: Bearer <token>).
	Token []byte
	// StateFile, when set, keeps the registrations (name, index, port, CA or its paths) across a
	// restart: Restore registers them again. Objects are not kept: lab's node simulator writes them
	// again from the management cluster's view.
	StateFile string
}

// Cluster is one registered workload cluster, as the control API lists it.
type Cluster struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	Port    int32  `json:"port"`
	Address string `json:"address"`
	// caCertPEM is kept to make a repeated register idempotent (same CA: no-op; another: refused).
	caCertPEM []byte
	// req is the registration as asked, what the state file keeps
	req      registerRequest
	listener net.Listener
	server   *http.Server
}

// registerRequest is the body of POST /v1/clusters: the CA as PEM, or as paths this process reads.
type registerRequest struct {
	Name       string `json:"name"`
	Index      int    `json:"index"`
	Port       int32  `json:"port"`
	CACert     string `json:"caCert,omitempty"`
	CAKey      string `json:"caKey,omitempty"`
	CACertFile string `json:"caCertFile,omitempty"`
	CAKeyFile  string `json:"caKeyFile,omitempty"`
}

// Server holds the library's manager, one API handler shared by every cluster, and the clusters
// registered with their listeners.
type Server struct {
	opts    Options
	log     logr.Logger
	manager inmemoryruntime.Manager
	api     http.Handler

	// started tells one run of the process from the next (health reports it): a client that sees it
	// change knows the objects are gone and writes them again
	started time.Time

	lock      sync.Mutex
	clusters  map[string]*Cluster
	byPort    map[int32]string
	restoring bool
	// groupByAddress maps a listener's address to the resource group behind it (the resolver's view).
	groupByAddress sync.Map
}

// NewServer starts the library's manager (its cache's garbage collector); no listener opens before
// a cluster is registered.
func NewServer(ctx context.Context, opts Options) (*Server, error) {
	if len(opts.Token) == 0 {
		return nil, errors.New("an empty token would let anyone in")
	}
	if err := checkHost(opts.Host, opts.ExternalHost); err != nil {
		return nil, err
	}
	manager := inmemoryruntime.NewManager(clientgoscheme.Scheme)
	if err := manager.Start(ctx); err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, log: ctrllog.Log.WithName("lab-mux"), manager: manager, started: time.Now(),
		clusters: map[string]*Cluster{}, byPort: map[int32]string{},
	}
	s.api = inmemoryapi.NewAPIServerHandler(manager, s.log, s.resolve)
	return s, nil
}

// checkHost refuses a cluster host that is not one specific IP: loopback, or with external any
// unicast address but never a wildcard or multicast one.
func checkHost(host string, external bool) error {
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return fmt.Errorf("cluster host %q is not an IP", host)
	case ip.IsLoopback():
		return nil
	case !external:
		return fmt.Errorf("cluster host %q is not a loopback IP (--external-host allows one)", host)
	case ip.IsUnspecified() || ip.IsMulticast():
		return fmt.Errorf("cluster host %q is not one address: each listener binds one", host)
	}
	return nil
}

// resolve maps the address a request came in on to its cluster's resource group. The handler passes
// the request's Host, which a client chooses; serveCluster overwrites it with the listener's own
// address first, so a client of one cluster cannot name another.
func (s *Server) resolve(host string) (string, error) {
	if g, ok := s.groupByAddress.Load(host); ok {
		return g.(string), nil
	}
	return "", fmt.Errorf("no cluster serves %s", host)
}

// serveCluster is the handler behind one cluster's listener.
func (s *Server) serveCluster(address string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Host = address
		s.api.ServeHTTP(w, r)
	})
}

// Close closes every listener and its connections (watches included: they never go idle, so a
// graceful shutdown would only wait out its timeout).
func (s *Server) Close() error {
	s.lock.Lock()
	defer s.lock.Unlock()
	var errs []error
	for _, c := range s.clusters {
		errs = append(errs, c.server.Close())
	}
	return errors.Join(errs...)
}

// parseCA reads a CA certificate and its key (RSA or ECDSA: this process only signs a serving
// certificate with it, which crypto/x509 does with either).
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, nil, errors.New("caCert is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("caCert: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("caCert is not a CA certificate")
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("caKey is not PEM")
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("caKey: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("caKey is %T, not a signing key", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("caKey does not match caCert")
	}
	return cert, signer, nil
}

// servingCert signs a kube-apiserver serving certificate for host with the cluster's CA. The key is
// ECDSA P-256: cheap to make per cluster (an RSA-2048 key takes ~100 ms of a core), and clients only
// check that the chain ends at the CA in their kubeconfig.
func servingCert(caCert *x509.Certificate, caKey crypto.Signer, host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	notAfter := time.Now().Add(servingCertValidity)
	if caCert.NotAfter.Before(notAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP(host), net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, caCert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// tlsConfig serves the cluster's certificate and lets in only clients whose certificate its CA signed.
func tlsConfig(caCert *x509.Certificate, serving tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serving},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// httpError is an error with the HTTP status the control API answers with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Register serves a new cluster on its port; registering the same name, port and CA again is a no-op.
func (s *Server) Register(ctx context.Context, req registerRequest) (*Cluster, error) {
	if !dnsLabel.MatchString(req.Name) {
		return nil, fail(http.StatusBadRequest, "invalid cluster name %q", req.Name)
	}
	if req.Port < s.opts.MinPort || req.Port > s.opts.MaxPort {
		return nil, fail(http.StatusBadRequest, "port %d outside %d-%d", req.Port, s.opts.MinPort, s.opts.MaxPort)
	}
	certPEM, keyPEM := []byte(req.CACert), []byte(req.CAKey)
	if req.CACertFile != "" || req.CAKeyFile != "" {
		var err error
		if certPEM, err = os.ReadFile(req.CACertFile); err != nil {
			return nil, fail(http.StatusBadRequest, "caCertFile: %v", err)
		}
		if keyPEM, err = os.ReadFile(req.CAKeyFile); err != nil {
			return nil, fail(http.StatusBadRequest, "caKeyFile: %v", err)
		}
	}
	caCert, caKey, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}

	s.lock.Lock()
	defer s.lock.Unlock()
	if have, ok := s.clusters[req.Name]; ok {
		if have.Port == req.Port && string(have.caCertPEM) == string(certPEM) {
			return have, nil
		}
		return nil, fail(http.StatusConflict, "%s is registered on port %d with another CA or port", req.Name, have.Port)
	}
	if other, ok := s.byPort[req.Port]; ok {
		return nil, fail(http.StatusConflict, "port %d is %s's", req.Port, other)
	}

	address := net.JoinHostPort(s.opts.Host, fmt.Sprint(req.Port))
	serving, err := servingCert(caCert, caKey, s.opts.Host)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	// One address only, and the usual failure is another process on the port.
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fail(http.StatusConflict, "%v", err)
	}
	s.manager.AddResourceGroup(req.Name)
	client := s.manager.GetResourceGroup(req.Name).GetClient()
	for _, ns := range defaultNamespaces {
		if err := client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			_ = l.Close()
			s.manager.DeleteResourceGroup(req.Name)
			return nil, fail(http.StatusInternalServerError, "namespace %s: %v", ns, err)
		}
	}
	c := &Cluster{
		Name:      req.Name,
		Index:     req.Index,
		Port:      req.Port,
		Address:   address,
		caCertPEM: certPEM,
		req:       req,
		listener:  l,
		server: &http.Server{
			Handler:           s.serveCluster(address),
			TLSConfig:         tlsConfig(caCert, serving),
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          log.New(tlsErrorLog{}, "", 0),
		},
	}
	s.groupByAddress.Store(address, req.Name)
	go func() {
		if err := c.server.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(err, "serving stopped", "cluster", c.Name, "address", address)
		}
	}()
	s.clusters[c.Name] = c
	s.byPort[c.Port] = c.Name
	s.log.Info("registered", "cluster", c.Name, "address", address)
	if err := s.saveLocked(); err != nil {
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	return c, nil
}

// saveLocked writes the registrations to the state file (0600: it may hold CA keys), atomically.
// Note: s.lock must be held.
func (s *Server) saveLocked() error {
	if s.opts.StateFile == "" || s.restoring {
		return nil
	}
	reqs := make([]registerRequest, 0, len(s.clusters))
	for _, c := range s.clusters {
		reqs = append(reqs, c.req)
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Name < reqs[j].Name })
	b, err := json.Marshal(reqs)
	if err != nil {
		return err
	}
	tmp := s.opts.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, s.opts.StateFile); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// Restore registers again what the state file holds (after a crash or a stop): same names, ports
// and CAs, so every endpoint and kubeconfig stays valid. A registration that fails now (its CA
// files gone with a cluster deleted meanwhile, its port taken) is logged and dropped. Returns how
// many clusters are served.
func (s *Server) Restore(ctx context.Context) (int, error) {
	if s.opts.StateFile == "" {
		return 0, nil
	}
	b, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state file: %w", err)
	}
	var reqs []registerRequest
	if err := json.Unmarshal(b, &reqs); err != nil {
		return 0, fmt.Errorf("state file %s: %w", s.opts.StateFile, err)
	}
	s.lock.Lock()
	s.restoring = true
	s.lock.Unlock()
	for _, req := range reqs {
		if _, err := s.Register(ctx, req); err != nil {
			s.log.Error(err, "not restored", "cluster", req.Name)
		}
	}
	s.lock.Lock()
	defer s.lock.Unlock()
	s.restoring = false
	return len(s.clusters), s.saveLocked()
}

// Unregister closes the cluster's listener and every open connection and drops its objects; an
// unknown name is fine (idempotent).
func (s *Server) Unregister(name string) error {
	s.lock.Lock()
	defer s.lock.Unlock()
	c, ok := s.clusters[name]
	if !ok {
		return nil
	}
	// Close, not Shutdown: watches never end by themselves, and a deleted cluster owes them nothing.
	if err := c.server.Close(); err != nil {
		return fail(http.StatusInternalServerError, "%v", err)
	}
	// the server closes the listener once it serves it; this covers a Close before that
	_ = c.listener.Close()
	s.groupByAddress.Delete(c.Address)
	s.manager.DeleteResourceGroup(name)
	delete(s.byPort, c.Port)
	delete(s.clusters, name)
	s.log.Info("unregistered", "cluster", name)
	if err := s.saveLocked(); err != nil {
		return fail(http.StatusInternalServerError, "%v", err)
	}
	return nil
}

// tlsErrorLog drops net/http's per-connection TLS handshake errors (every refused client would log
// one) and keeps the rest.
type tlsErrorLog struct{}

func (tlsErrorLog) Write(p []byte) (int, error) {
	if !strings.Contains(string(p), "TLS handshake error") {
		log.Print(string(p))
	}
	return len(p), nil
}

// List returns the registered clusters by name.
func (s *Server) List() []Cluster {
	s.lock.Lock()
	defer s.lock.Unlock()
	out := make([]Cluster, 0, len(s.clusters))
	for _, c := range s.clusters {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), s.opts.Token) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	if errors.As(err, &he) {
		code = he.code
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Handler is the control API: every route needs the token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"ok": true, "clusters": len(s.List()), "started": s.started.UTC().Format(time.RFC3339Nano),
		})
	})
	mux.HandleFunc("GET /v1/clusters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.List())
	})
	mux.HandleFunc("POST /v1/clusters", func(w http.ResponseWriter, r *http.Request) {
		var req registerRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, fail(http.StatusBadRequest, "body: %v", err))
			return
		}
		c, err := s.Register(r.Context(), req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("DELETE /v1/clusters/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Unregister(r.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// readToken reads the control token from a file only its owner may read.
func readToken(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is mode %o: the token file must be private (0600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) < 16 {
		return nil, fmt.Errorf("%s holds a token shorter than 16 bytes", path)
	}
	return token, nil
}

// loopbackListener listens on addr, refusing any address that is not loopback.
func loopbackListener(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("control address %s is not a loopback IP", addr)
	}
	return net.Listen("tcp", addr)
}

func newLogger(verbosity int) logr.Logger {
	return funcr.New(func(prefix, args string) { log.Println(prefix, args) }, funcr.Options{Verbosity: verbosity})
}

func main() {
	control := flag.String("control-address", "127.0.0.1:19443", "control API address (loopback only)")
	tokenFile := flag.String("token-file", "", "file holding the control API token (mode 0600)")
	host := flag.String("host", "127.2.0.1", "address every cluster's listener binds (serving cert SAN): loopback unless --external-host")
	external := flag.Bool("external-host", false, "allow a --host that is not loopback (one unicast IP, never 0.0.0.0)")
	minPort := flag.Int("min-port", 20001, "lowest cluster port")
	maxPort := flag.Int("max-port", 32767, "highest cluster port")
	stateFile := flag.String("state-file", "", "keeps the registrations across restarts (mode 0600)")
	verbosity := flag.Int("v", 0, "log verbosity")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.LUTC)
	ctrllog.SetLogger(newLogger(*verbosity))

	token, err := readToken(*tokenFile)
	if err != nil {
		log.Fatalf("error: %v", err)
	}
	l, err := loopbackListener(*control)
	if err != nil {
		log.Fatalf("error: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := NewServer(ctx, Options{
		Host: *host, ExternalHost: *external, MinPort: int32(*minPort), MaxPort: int32(*maxPort), Token: token, StateFile: *stateFile,
	})
	if err != nil {
		log.Fatalf("error: %v", err)
	}
	// before the control API answers, so a client that sees it answer sees every endpoint back
	restored, err := srv.Restore(ctx)
	if err != nil {
		log.Fatalf("error: %v", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close()
		_ = hs.Shutdown(sctx)
	}()
	log.Printf("lab-mux: control API on %s, clusters on %s:%d-%d, %d restored", l.Addr(), *host, *minPort, *maxPort, restored)
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("error: %v", err)
	}
}
