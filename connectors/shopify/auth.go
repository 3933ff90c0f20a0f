package shopify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// refreshBefore is how long before its expiry a granted token is replaced.
const refreshBefore = 5 * time.Minute

// tokenSource supplies the X-Shopify-Access-Token. Tokens never appear in logs or errors.
type tokenSource interface {
	// token returns the access token to send.
	token(ctx context.Context) (string, error)
	// rejected tells the source Shopify answered 401 to tok; it reports whether asking for a
	// token again may help.
	rejected(tok string) bool
}

// staticToken is with.token: an Admin API access token that only its owner can replace.
type staticToken string

func (t staticToken) token(context.Context) (string, error) { return string(t), nil }
func (staticToken) rejected(string) bool                    { return false }

// clientCredentials obtains tokens with the client credentials grant (Dev Dashboard apps
// installed in the organisation's own stores): POST /admin/oauth/access_token with grant_type,
// client_id and client_secret. Shopify's tokens from this grant expire (24 hours); a token is
// replaced shortly before its expires_in runs out, and at once when Shopify answers 401.
type clientCredentials struct {
	client *http.Client
	url    string
	id     string
	secret string

	mu  sync.Mutex
	tok string
	exp time.Time
}

func newClientCredentials(client *http.Client, baseURL, id, secret string) *clientCredentials {
	return &clientCredentials{client: client, url: baseURL + "/admin/oauth/access_token", id: id, secret: secret}
}

func (c *clientCredentials) token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != "" && time.Until(c.exp) > refreshBefore {
		return c.tok, nil
	}
	tok, ttl, err := c.grant(ctx)
	if err != nil {
		return "", err
	}
	c.tok, c.exp = tok, time.Now().Add(ttl)
	return tok, nil
}

func (c *clientCredentials) rejected(tok string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == tok {
		c.tok = ""
	}
	return true
}

// grantReply is the token endpoint's answer.
type grantReply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"` // seconds
	Error       string `json:"error"`
}

// grant asks for a token; every failure is retryable, since only new credentials or a working
// endpoint fix it and the sink should wait for them rather than dead-letter records.
func (c *clientCredentials) grant(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_secret": {c.secret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("shopify: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.client.Do(req)
	if err != nil {
		return "", 0, sink.Retryable(fmt.Errorf("shopify: client credentials grant: %w", err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var r grantReply
	_ = json.Unmarshal(body, &r)
	if resp.StatusCode != http.StatusOK || r.AccessToken == "" {
		return "", 0, sink.Retryable(fmt.Errorf("shopify: client credentials grant answered HTTP %d %s; check with.client_id, with.client_secret and that the app is installed in the shop",
			resp.StatusCode, r.Error))
	}
	ttl := 24 * time.Hour
	if r.ExpiresIn > 0 {
		ttl = time.Duration(r.ExpiresIn) * time.Second
	}
	return r.AccessToken, ttl, nil
}
