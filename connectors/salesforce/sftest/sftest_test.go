package sftest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = "cid", "secret"
	s := New(cfg)
	t.Cleanup(s.Close)
	return s
}

// login gets a token through the client credentials flow.
func login(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.PostForm(s.URL+"/services/oauth2/token",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	if raw["access_token"] == "" || raw["instance_url"] != s.URL {
		t.Fatalf("token answer %v", raw)
	}
	return raw["access_token"]
}

// call makes a data API request and returns the status and body.
func call(t *testing.T, s *Server, token, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+"/services/data/v61.0"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func records(n int) string {
	recs := make([]string, n)
	for i := range recs {
		recs[i] = fmt.Sprintf(`{"attributes":{"type":"Lead"},"Ext__c":"E%d","LastName":"L"}`, i)
	}
	return `{"allOrNone":false,"records":[` + strings.Join(recs, ",") + `]}`
}

func TestCollectionsContract(t *testing.T) {
	s := start(t, Config{})
	tok := login(t, s)
	if code, body := call(t, s, tok, "PATCH", "/composite/sobjects/Lead/Ext__c", records(201)); code != 400 || !strings.Contains(body, CodeExceededLimit) {
		t.Fatalf("201 records: %d %s", code, body)
	}
	code, body := call(t, s, tok, "PATCH", "/composite/sobjects/Lead/Ext__c", records(2))
	var res []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || len(res) != 2 || res[0]["success"] != true || res[0]["created"] != true {
		t.Fatalf("2 records: %d %s", code, body)
	}
	if code, body := call(t, s, "bogus", "PATCH", "/composite/sobjects/Lead/Ext__c", records(1)); code != 401 ||
		body != `[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]`+"\n" {
		t.Fatalf("bad token: %d %s", code, body)
	}
	if code, _ := call(t, s, tok, "DELETE", "/sobjects/Lead/Ext__c/E0", ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, body := call(t, s, tok, "DELETE", "/sobjects/Lead/Ext__c/E0", ""); code != 404 || !strings.Contains(body, CodeNotFound) {
		t.Fatalf("delete again: %d %s", code, body)
	}
}

func TestBudget(t *testing.T) {
	s := start(t, Config{Budget: 1, Window: time.Hour})
	tok := login(t, s)
	call(t, s, tok, "PATCH", "/composite/sobjects/Lead/Ext__c", records(1))
	if code, body := call(t, s, tok, "PATCH", "/composite/sobjects/Lead/Ext__c", records(1)); code != 403 || !strings.Contains(body, CodeRequestLimit) {
		t.Fatalf("over budget: %d %s", code, body)
	}
}

func TestJWTChecks(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s := start(t, Config{PublicKey: &key.PublicKey, Username: "u@example.com"})
	sign := func(claims map[string]any) string {
		enc := base64.RawURLEncoding
		c, _ := json.Marshal(claims)
		in := enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(c)
		sum := sha256.Sum256([]byte(in))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		return in + "." + enc.EncodeToString(sig)
	}
	exp := time.Now().Add(2 * time.Minute).Unix()
	for name, tc := range map[string]struct {
		claims map[string]any
		status int
	}{
		"valid":      {map[string]any{"iss": "cid", "sub": "u@example.com", "aud": s.URL, "exp": exp}, 200},
		"wrong aud":  {map[string]any{"iss": "cid", "sub": "u@example.com", "aud": "https://x", "exp": exp}, 400},
		"expired":    {map[string]any{"iss": "cid", "sub": "u@example.com", "aud": s.URL, "exp": time.Now().Add(-time.Minute).Unix()}, 400},
		"too far":    {map[string]any{"iss": "cid", "sub": "u@example.com", "aud": s.URL, "exp": time.Now().Add(time.Hour).Unix()}, 400},
		"other user": {map[string]any{"iss": "cid", "sub": "v@example.com", "aud": s.URL, "exp": exp}, 400},
	} {
		resp, err := http.PostForm(s.URL+"/services/oauth2/token",
			url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {sign(tc.claims)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, tc.status)
		}
	}
}
