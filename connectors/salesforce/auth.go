package salesforce

import (
	"context"
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
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/connectors/internal/httpx"
)

// JWTGrantType is the grant_type of the OAuth 2.0 JWT bearer flow.
const JWTGrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// jwtLifetime is how long an assertion is valid: Salesforce wants exp within 3 minutes.
const jwtLifetime = 3 * time.Minute

// session is one access token and the instance it is valid for. It never appears in logs or errors.
type session struct {
	accessToken string
	instanceURL string // no trailing slash
}

// authenticator gets access tokens from {login_url}/services/oauth2/token and shares them
// between concurrent requests; a stale token is replaced once, however many requests saw it fail.
type authenticator struct {
	cfg    *config
	client *http.Client
	log    *zap.Logger

	mu  sync.Mutex
	cur *session
}

// current returns the session, logging in first when there is none.
func (a *authenticator) current(ctx context.Context) (*session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur != nil {
		return a.cur, nil
	}
	return a.login(ctx)
}

// refresh replaces stale, the session a request was refused with, unless another request has
// already replaced it.
func (a *authenticator) refresh(ctx context.Context, stale *session) (*session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur != nil && a.cur != stale {
		return a.cur, nil
	}
	a.cur = nil
	s, err := a.login(ctx)
	if err == nil {
		a.log.Info("salesforce session expired or invalid; logged in again")
	}
	return s, err
}

// login runs the configured OAuth flow; a.mu is held.
func (a *authenticator) login(ctx context.Context) (*session, error) {
	form, err := a.tokenForm()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.loginURL+"/services/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("salesforce: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("salesforce: token request (%s) to %s: %w", a.cfg.auth, a.cfg.loginURL, httpx.WithoutURL(err))
	}
	defer httpx.DrainClose(resp.Body)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("salesforce: token request (%s): read response: %w", a.cfg.auth, httpx.WithoutURL(err))
	}
	s, err := a.parseToken(resp.StatusCode, body)
	if err == nil {
		a.cur = s
	}
	return s, err
}

// tokenForm builds the token request of the configured flow.
func (a *authenticator) tokenForm() (url.Values, error) {
	if a.cfg.auth == AuthClientCredentials {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {a.cfg.clientID},
			"client_secret": {a.cfg.clientSecret}}, nil
	}
	assertion, err := SignJWT(a.cfg.privateKey, a.cfg.clientID, a.cfg.username, a.cfg.audience, time.Now())
	if err != nil {
		return nil, err
	}
	return url.Values{"grant_type": {JWTGrantType}, "assertion": {assertion}}, nil
}

// tokenResponse is the token endpoint's answer, success or OAuth error.
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	InstanceURL      string `json:"instance_url"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// parseToken reads a token response; its errors quote Salesforce's error, never the token.
func (a *authenticator) parseToken(status int, body []byte) (*session, error) {
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if status != http.StatusOK {
		if jsonErr != nil || tr.Error == "" {
			return nil, fmt.Errorf("salesforce: token request (%s): HTTP %d: %s", a.cfg.auth, status, httpx.Snippet(body, snippetBytes))
		}
		return nil, fmt.Errorf("salesforce: token request (%s) refused: %s: %s", a.cfg.auth, tr.Error, tr.ErrorDescription)
	}
	if jsonErr != nil || tr.AccessToken == "" {
		return nil, fmt.Errorf("salesforce: token request (%s): no access_token in the response", a.cfg.auth)
	}
	instance, err := checkURL(tr.InstanceURL)
	if err != nil {
		return nil, fmt.Errorf("salesforce: token request (%s): instance_url: %w", a.cfg.auth, err)
	}
	return &session{accessToken: tr.AccessToken, instanceURL: instance}, nil
}

// SignJWT returns the assertion of the OAuth 2.0 JWT bearer flow: header {"alg":"RS256"}, claims
// iss (the connected app's client id), sub (the username), aud (the login URL) and exp (now plus
// 3 minutes, in seconds), each part base64url-encoded without padding, signed with RSA SHA-256.
func SignJWT(key *rsa.PrivateKey, iss, sub, aud string, now time.Time) (string, error) {
	claims, err := json.Marshal(map[string]any{"iss": iss, "sub": sub, "aud": aud, "exp": now.Add(jwtLifetime).Unix()})
	if err != nil {
		return "", fmt.Errorf("salesforce: encode JWT claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("salesforce: sign JWT: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
