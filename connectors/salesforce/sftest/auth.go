package sftest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jwtMaxLifetime is how far ahead a JWT's exp may be (Salesforce: 3 minutes), plus clock skew.
const jwtMaxLifetime = 3*time.Minute + 30*time.Second

// token serves POST /services/oauth2/token for both flows.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.TokenRequests++
	s.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", "unreadable form")
		return
	}
	var err error
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		if r.PostForm.Get("client_id") != s.cfg.ClientID || r.PostForm.Get("client_secret") != s.cfg.ClientSecret || s.cfg.ClientSecret == "" {
			oauthError(w, "invalid_client", "invalid client credentials")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err = s.verifyJWT(r.PostForm.Get("assertion")); err != nil {
			oauthError(w, "invalid_grant", err.Error())
			return
		}
	default:
		oauthError(w, "unsupported_grant_type", "grant type not supported")
		return
	}
	s.mu.Lock()
	tok := s.issueToken()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok, "instance_url": s.URL,
		"id": s.URL + "/id/00D000000000001AAA/005000000000001AAA", "token_type": "Bearer", "scope": "api",
		"issued_at": strconv.FormatInt(time.Now().UnixMilli(), 10), "signature": "c3R1Yg=="})
}

func oauthError(w http.ResponseWriter, code, description string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": description})
}

// verifyJWT checks an RS256 assertion: signature, iss, sub, aud and exp.
func (s *Server) verifyJWT(assertion string) error {
	if s.cfg.PublicKey == nil {
		return errors.New("no certificate registered for the JWT bearer flow")
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return errors.New("invalid assertion")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodePart(parts[0], &header); err != nil || header.Alg != "RS256" {
		return errors.New("invalid assertion: alg must be RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("invalid assertion: signature encoding")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(s.cfg.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return errors.New("invalid assertion: signature")
	}
	return s.checkClaims(parts[1])
}

// checkClaims checks iss, sub, aud and exp of a verified assertion.
func (s *Server) checkClaims(part string) error {
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud string          `json:"aud"`
		Exp json.RawMessage `json:"exp"`
	}
	if err := decodePart(part, &c); err != nil {
		return errors.New("invalid assertion: claims")
	}
	aud := s.cfg.Audience
	if aud == "" {
		aud = s.URL
	}
	switch {
	case c.Iss != s.cfg.ClientID:
		return errors.New("invalid client identifier")
	case c.Sub != s.cfg.Username:
		return errors.New("user hasn't approved this consumer")
	case c.Aud != aud:
		return fmt.Errorf("audience is invalid")
	}
	exp, err := strconv.ParseInt(strings.Trim(string(c.Exp), `"`), 10, 64)
	now := time.Now()
	if err != nil || time.Unix(exp, 0).Before(now) || time.Unix(exp, 0).After(now.Add(jwtMaxLifetime)) {
		return errors.New("expired authorization code")
	}
	return nil
}

// decodePart decodes one base64url JSON part of a JWT.
func decodePart(part string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
