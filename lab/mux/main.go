// Command lab-mux serves the workload API of many clusters from one process: lab's `mux` backing.
//
// It is a thin control layer over Cluster API's in-memory API server library
// (sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/server and .../pkg/runtime), imported at
// a pinned version, never copied: the library's WorkloadClustersMux gives each cluster a listener on
// its own port, TLS from the cluster's own CA (AddAPIServer) and an in-memory resource group as its
// store. What this program adds is what lab needs around it: a control API on loopback only,
// authenticated by a token, with register, unregister (listener, certificates and objects gone),
// list and health; the port of each cluster is chosen by lab (deterministic from the cluster's
// index, lab.naming.mux_endpoint), not allocated by the library, so endpoints are stable.
package main

import (
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
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
	inmemoryserver "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/server"
)

// apiServerPod names the one API server "instance" behind each listener; the library starts the
// listener with the first and stops it when the last is removed.
const apiServerPod = "kube-apiserver"

// defaultNamespaces are what a fresh kube-apiserver creates, so a cluster looks like one to clients.
var defaultNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Options configure a Server.
type Options struct {
	// Host is the address every cluster's endpoint uses (its serving certificate's IP SAN).
	Host string
	// MinPort and MaxPort bound the ports clusters may be registered on.
	MinPort, MaxPort int32
	// Token authenticates every control API call (Authorization: Bearer <token>).
	Token []byte
}

// Cluster is one registered workload cluster, as the control API lists it.
type Cluster struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	Port    int32  `json:"port"`
	Address string `json:"address"`
	// caCertPEM is kept to make a repeated register idempotent (same CA: no-op; another: refused).
	caCertPEM []byte
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

// Server holds the library's manager and mux and the clusters registered on them.
type Server struct {
	opts    Options
	manager inmemoryruntime.Manager
	mux     *inmemoryserver.WorkloadClustersMux

	lock     sync.Mutex
	clusters map[string]*Cluster
	byPort   map[int32]string
}

// NewServer starts the library's manager (its cache's garbage collector) and mux.
func NewServer(ctx context.Context, opts Options) (*Server, error) {
	if len(opts.Token) == 0 {
		return nil, errors.New("an empty token would let anyone in")
	}
	manager := inmemoryruntime.NewManager(clientgoscheme.Scheme)
	if err := manager.Start(ctx); err != nil {
		return nil, err
	}
	// DebugPort 0: the library always opens its (unauthenticated) debug server; on a random port at
	// least it is nowhere anyone expects it. The listener port range is only for the library's own
	// allocation, which lab never uses (every register names its port).
	mux, err := inmemoryserver.NewWorkloadClustersMux(manager, opts.Host, inmemoryserver.CustomPorts{
		MinPort: opts.MinPort, MaxPort: opts.MaxPort, DebugPort: 0,
	})
	if err != nil {
		return nil, err
	}
	return &Server{opts: opts, manager: manager, mux: mux, clusters: map[string]*Cluster{}, byPort: map[int32]string{}}, nil
}

// Shutdown closes every listener.
func (s *Server) Shutdown(ctx context.Context) error { return s.mux.Shutdown(ctx) }

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *rsa.PrivateKey, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, nil, errors.New("caCert is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("caCert: %w", err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("caKey is not PEM")
	}
	var key any
	if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			return nil, nil, fmt.Errorf("caKey: %w", err)
		}
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		// The library's AddAPIServer takes an *rsa.PrivateKey only.
		return nil, nil, fmt.Errorf("caKey is %T: the in-memory API server signs with an RSA CA only", key)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&rsaKey.PublicKey) {
		return nil, nil, errors.New("caKey does not match caCert")
	}
	return cert, rsaKey, nil
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

	s.manager.AddResourceGroup(req.Name)
	undo := func() {
		_ = s.mux.DeleteWorkloadClusterListener(req.Name)
		s.manager.DeleteResourceGroup(req.Name)
	}
	client := s.manager.GetResourceGroup(req.Name).GetClient()
	for _, ns := range defaultNamespaces {
		if err := client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			undo()
			return nil, fail(http.StatusInternalServerError, "namespace %s: %v", ns, err)
		}
	}
	if _, err := s.mux.InitWorkloadClusterListenerWithPort(req.Name, req.Port); err != nil {
		undo()
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	if err := s.mux.RegisterResourceGroup(req.Name, req.Name); err != nil {
		undo()
		return nil, fail(http.StatusInternalServerError, "%v", err)
	}
	if err := s.mux.AddAPIServer(req.Name, apiServerPod, caCert, caKey); err != nil {
		undo()
		// the usual cause: another process holds the port
		return nil, fail(http.StatusConflict, "%v", err)
	}
	c := &Cluster{
		Name:      req.Name,
		Index:     req.Index,
		Port:      req.Port,
		Address:   net.JoinHostPort(s.opts.Host, fmt.Sprint(req.Port)),
		caCertPEM: certPEM,
	}
	s.clusters[c.Name] = c
	s.byPort[c.Port] = c.Name
	return c, nil
}

// Unregister stops the cluster's listener (open connections included) and drops its objects;
// an unknown name is fine (idempotent).
func (s *Server) Unregister(name string) error {
	s.lock.Lock()
	defer s.lock.Unlock()
	c, ok := s.clusters[name]
	if !ok {
		return nil
	}
	if err := s.mux.DeleteAPIServer(name, apiServerPod); err != nil {
		return fail(http.StatusInternalServerError, "%v", err)
	}
	if err := s.mux.DeleteWorkloadClusterListener(name); err != nil {
		return fail(http.StatusInternalServerError, "%v", err)
	}
	s.manager.DeleteResourceGroup(name)
	delete(s.byPort, c.Port)
	delete(s.clusters, name)
	return nil
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
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "clusters": len(s.List())})
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
	host := flag.String("host", "127.2.0.1", "address of every cluster's endpoint (serving cert SAN)")
	minPort := flag.Int("min-port", 20001, "lowest cluster port")
	maxPort := flag.Int("max-port", 32767, "highest cluster port")
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
	srv, err := NewServer(ctx, Options{Host: *host, MinPort: int32(*minPort), MaxPort: int32(*maxPort), Token: token})
	if err != nil {
		log.Fatalf("error: %v", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("lab-mux: control API on %s, clusters on %s:%d-%d", l.Addr(), *host, *minPort, *maxPort)
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("error: %v", err)
	}
}
