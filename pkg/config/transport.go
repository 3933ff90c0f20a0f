package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Warning is a setting that works but should not stay as it is: a connection that leaves the
// machine in plaintext or without checking whom it talks to, or a sink topic that looks like a
// typo of one the pipeline writes. `backflow validate` prints warnings and still succeeds;
// capture, sink and run log them at start.
type Warning struct {
	File    string // the pipeline file, for the message; may be empty
	Path    string // the setting, as in FieldError
	Line    int    // 1-based; 0 when unknown
	Message string // what is wrong and what to do
}

// String formats the warning as "file:line: path: message".
func (w Warning) String() string {
	return (&ValidationError{File: w.File}).prefix(w.Line) + FieldError{Path: w.Path, Message: w.Message}.Error()
}

// LoadWithWarnings is Load that also returns the pipeline's warnings (see TransportWarnings),
// each with its line in the file.
func LoadWithWarnings(path string) (*Pipeline, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read pipeline file: %w", err)
	}
	return ParseWithWarnings(data, path)
}

// ParseWithWarnings is Parse that also returns the pipeline's warnings, each with its line.
func ParseWithWarnings(data []byte, file string) (*Pipeline, []Warning, error) {
	p, c, err := parse(data, file)
	if err != nil {
		return nil, nil, err
	}
	return p, warnings(p, c, file), nil
}

// warnings returns the pipeline's transport, topic and shared-target warnings with their lines, in line order.
func warnings(p *Pipeline, c *collector, file string) []Warning {
	var ws []Warning
	for _, fe := range append(append(p.TransportWarnings(), p.TopicWarnings()...), p.SharedTargetWarnings()...) {
		ws = append(ws, Warning{File: file, Path: fe.Path, Line: c.line(fe.Path), Message: fe.Message})
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Line < ws[j].Line })
	return ws
}

// TransportWarnings lists the connections to other machines that go in plaintext or do not
// verify the server: PostgreSQL without sslmode (or with disable, allow or prefer), SASL PLAIN
// without TLS, http:// URLs, insecure_skip_verify, a MySQL DSN without tls (or with false,
// preferred or skip-verify), redis:// URLs. Connections to loopback addresses and Unix sockets
// are left alone: they do not cross a network. Lines are 0; ParseWithWarnings adds them.
func (p *Pipeline) TransportWarnings() []FieldError {
	var ws []FieldError
	add := func(path, format string, args ...any) {
		ws = append(ws, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if msg := postgresTransport(p.Source.Postgres.URL); msg != "" {
		add("source.postgres.url", "%s", msg)
	}
	k := p.Kafka
	if k.SASL != nil && strings.EqualFold(k.SASL.Mechanism, "PLAIN") && k.TLS == nil && anyRemote(k.Brokers) {
		add("kafka.sasl.mechanism", "SASL PLAIN without kafka.tls sends the password in plaintext to the brokers; add kafka.tls (or use SCRAM-SHA-512 over TLS)")
	}
	if k.TLS != nil && k.TLS.InsecureSkipVerify {
		add("kafka.tls.insecure_skip_verify", "the brokers' certificates are not verified, so anyone on the path can pose as them; give kafka.tls.ca_file instead")
	}
	if msg := httpTransport(k.Registry.URL); msg != "" {
		add("kafka.schema_registry.url", "%s", msg)
	}
	for i, s := range p.Sinks {
		path := index("sinks", i) + ".with"
		switch s.Connector {
		case "postgres":
			if u, ok := s.With["url"].(string); ok {
				if msg := postgresTransport(u); msg != "" {
					add(path+".url", "%s", msg)
				}
			}
		case "mysql":
			if dsn, ok := s.With["dsn"].(string); ok {
				if msg := mysqlTransport(dsn, s.With["tls"]); msg != "" {
					add(path+".dsn", "%s", msg)
				}
			}
		case "redis":
			if u, ok := s.With["url"].(string); ok {
				if msg := redisTransport(u); msg != "" {
					add(path+".url", "%s", msg)
				}
			}
		}
		withTransport(s.With, path, add)
	}
	return ws
}

// withTransport reports, anywhere in a sink's `with`, http:// URLs to other machines and
// insecure_skip_verify: true.
func withTransport(m map[string]any, path string, add func(path, format string, args ...any)) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		child := JoinKey(path, k)
		switch v := m[k].(type) {
		case string:
			if msg := httpTransport(v); msg != "" {
				add(child, "%s", msg)
			}
		case bool:
			if v && k == "insecure_skip_verify" {
				add(child, "the server's certificate is not verified, so anyone on the path can pose as it; give its CA instead")
			}
		case map[string]any:
			withTransport(v, child, add)
		}
	}
}

// httpTransport warns about an http:// URL to another machine.
func httpTransport(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || !strings.EqualFold(u.Scheme, "http") || u.Host == "" || isLocal(u.Hostname()) {
		return ""
	}
	return fmt.Sprintf("http:// to %s is plaintext: what is sent (records, credentials, signatures) can be read and changed on the way; use https://", u.Hostname())
}

// postgresTransport warns about a PostgreSQL URL or key=value DSN to another machine whose
// sslmode (or PGSSLMODE, when it has none) lets the connection go unencrypted.
func postgresTransport(conn string) string {
	hosts, mode := postgresHostsAndSSLMode(conn)
	if mode == "" {
		mode = os.Getenv("PGSSLMODE")
	}
	if len(hosts) == 0 {
		hosts = []string{os.Getenv("PGHOST")}
	}
	remote := ""
	for _, h := range hosts {
		if !isLocal(h) {
			remote = h
			break
		}
	}
	switch {
	case remote == "":
		return ""
	case mode == "":
		return fmt.Sprintf("no sslmode for %s: the default (prefer) falls back to plaintext without a word and never verifies the server; add sslmode=verify-full (or at least require)", remote)
	case mode == "disable" || mode == "allow" || mode == "prefer":
		return fmt.Sprintf("sslmode=%s for %s may send everything, password included, in plaintext; use sslmode=verify-full (or at least require)", mode, remote)
	}
	return ""
}

// postgresHostsAndSSLMode reads the hosts and the sslmode of a postgres:// URL or a libpq
// key=value DSN; what it cannot read gives no hosts.
func postgresHostsAndSSLMode(conn string) (hosts []string, mode string) {
	conn = strings.TrimSpace(conn)
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return nil, ""
		}
		q := u.Query()
		for _, h := range strings.Split(u.Host, ",") {
			if host, _, err := net.SplitHostPort(h); err == nil {
				h = host
			}
			if h = strings.Trim(h, "[]"); h != "" {
				hosts = append(hosts, h)
			}
		}
		if h := q.Get("host"); h != "" { // a Unix socket directory, or a host, given as a parameter
			hosts = strings.Split(h, ",")
		}
		return hosts, q.Get("sslmode")
	}
	kv := dsnValues(conn)
	if h := kv["host"]; h != "" {
		hosts = strings.Split(h, ",")
	} else if a := kv["hostaddr"]; a != "" {
		hosts = strings.Split(a, ",")
	}
	return hosts, kv["sslmode"]
}

// dsnValues reads the pairs of a libpq key=value DSN (see checkDSN); a malformed one gives
// what was read before the fault.
func dsnValues(s string) map[string]string {
	kv := map[string]string{}
	rest := strings.TrimSpace(s)
	for rest != "" {
		key, _, _ := strings.Cut(rest, "=")
		next, err := dsnPair(rest)
		if err != nil {
			break
		}
		_, val, _ := strings.Cut(rest[:len(rest)-len(next)], "=")
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, "'") && strings.HasSuffix(val, "'") && len(val) >= 2 {
			val = strings.ReplaceAll(strings.ReplaceAll(val[1:len(val)-1], `\'`, "'"), `\\`, `\`)
		}
		kv[strings.TrimSpace(key)] = val
		rest = strings.TrimSpace(next)
	}
	return kv
}

// mysqlTransport warns about a go-sql-driver DSN, [user[:password]@][net[(addr)]]/db[?params],
// to another machine without verified TLS. with.tls, when set, replaces the DSN's tls.
func mysqlTransport(dsn string, withTLS any) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		return ""
	}
	netAddr := dsn[:slash]
	if at := strings.LastIndex(netAddr, "@"); at >= 0 {
		netAddr = netAddr[at+1:]
	}
	proto, addr, _ := strings.Cut(netAddr, "(")
	addr = strings.TrimSuffix(addr, ")")
	if proto == "unix" || addr == "" {
		return "" // a socket, or the driver's default 127.0.0.1:3306
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if isLocal(host) {
		return ""
	}
	mode := ""
	if _, params, ok := strings.Cut(dsn[slash:], "?"); ok {
		if q, err := url.ParseQuery(params); err == nil {
			mode = q.Get("tls")
		}
	}
	switch v := withTLS.(type) {
	case bool:
		mode = strconv.FormatBool(v)
	case string:
		if v != "" {
			mode = v
		}
	}
	switch mode {
	case "", "false":
		return fmt.Sprintf("no TLS to %s: rows and the password go in plaintext; add tls=true to the DSN (or with.tls: true)", host)
	case "preferred":
		return fmt.Sprintf("tls=preferred to %s falls back to plaintext and does not verify the server; use tls=true", host)
	case "skip-verify":
		return fmt.Sprintf("tls=skip-verify to %s does not verify the server, so anyone on the path can pose as it; use tls=true", host)
	}
	return ""
}

// redisTransport warns about a redis:// URL to another machine, and a rediss:// one that
// skips verification.
func redisTransport(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || isLocal(u.Hostname()) {
		return ""
	}
	switch {
	case u.Scheme == "redis":
		return fmt.Sprintf("redis:// to %s is plaintext: values and the password can be read on the way; use rediss://", u.Hostname())
	case u.Scheme == "rediss" && u.Query().Get("skip_verify") == "true":
		return fmt.Sprintf("skip_verify=true: the certificate of %s is not verified, so anyone on the path can pose as it", u.Hostname())
	}
	return ""
}

// anyRemote reports whether a broker list names another machine.
func anyRemote(brokers []string) bool {
	for _, b := range brokers {
		host := b
		if h, _, err := net.SplitHostPort(b); err == nil {
			host = h
		}
		if !isLocal(host) {
			return true
		}
	}
	return false
}

// isLocal reports whether host is this machine: empty (a driver's local default), localhost,
// a loopback address, or a Unix socket path.
func isLocal(host string) bool {
	host = strings.Trim(strings.TrimSpace(host), "[]")
	if host == "" || strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") ||
		strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
