package shopifytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const mutation = `mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) %s { userErrors { code field message } } }`

// post sends a GraphQL request and returns the status, the Retry-After header and the body.
func post(t *testing.T, s *Server, version, token, query string, vars any) (int, string, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/admin/api/"+version+"/graphql.json", bytes.NewReader(body))
	req.Header.Set("X-Shopify-Access-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

func quantities(s *Server, n int) (map[string]any, string) {
	loc := s.AddLocation("W")
	item := s.AddVariant("A", loc)
	qs := make([]any, n)
	for i := range qs {
		qs[i] = map[string]any{"inventoryItemId": item, "locationId": loc, "quantity": i, "changeFromQuantity": nil}
	}
	return map[string]any{"input": map[string]any{"name": "available", "reason": "correction", "quantities": qs}}, item
}

func errorCode(out map[string]any) string {
	errs, _ := out["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	ext, _ := errs[0].(map[string]any)["extensions"].(map[string]any)
	code, _ := ext["code"].(string)
	return code
}

func userErrorCodes(out map[string]any) string {
	data, _ := out["data"].(map[string]any)
	p, _ := data["inventorySetQuantities"].(map[string]any)
	return fmt.Sprint(p["userErrors"])
}

func TestContract(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	vars, _ := quantities(s, 251)
	key := `@idempotent(key: "k1")`
	if _, _, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, key), vars); errorCode(out) != "MAX_INPUT_SIZE_EXCEEDED" {
		t.Errorf("251 quantities: %v", out)
	}
	one, _ := quantities(s, 1)
	if _, _, out := post(t, s, "2026-04", DefaultToken, fmt.Sprintf(mutation, ""), one); errorCode(out) != "BAD_REQUEST" {
		t.Errorf("no @idempotent on 2026-04: %v", out)
	}
	if _, _, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, key), one); !strings.Contains(userErrorCodes(out), "[]") {
		t.Errorf("first call: %v", out)
	}
	if _, _, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, key), one); s.Counters().Replays != 1 || s.Counters().Applied != 1 {
		t.Errorf("same key again: %v, counters %+v", out, s.Counters())
	}
	other, _ := quantities(s, 2)
	if _, _, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, key), other); !strings.Contains(userErrorCodes(out), "IDEMPOTENCY_KEY_PARAMETER_MISMATCH") {
		t.Errorf("same key, other variables: %v", out)
	}
	if status, _, out := post(t, s, "2026-10", "wrong", fmt.Sprintf(mutation, key), one); status != 401 || !strings.Contains(fmt.Sprint(out["errors"]), "Invalid API key or access token") {
		t.Errorf("bad token: %d %v", status, out)
	}
	_, _, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, `@idempotent(key: "k9")`), one)
	cost, _ := out["extensions"].(map[string]any)["cost"].(map[string]any)
	if cost["requestedQueryCost"] != float64(DefaultMutationCost) || cost["throttleStatus"].(map[string]any)["maximumAvailable"] != float64(DefaultMaximumAvailable) {
		t.Errorf("extensions.cost = %v", cost)
	}
}

func TestThrottledBodies(t *testing.T) {
	for _, as429 := range []bool{false, true} {
		s := New(Config{Throttle429: as429, RestoreRate: 1})
		vars, _ := quantities(s, 1)
		s.Drain()
		status, retry, out := post(t, s, "2026-10", DefaultToken, fmt.Sprintf(mutation, `@idempotent(key: "k")`), vars)
		wantStatus, wantRetry := 200, ""
		if as429 {
			wantStatus, wantRetry = 429, "10.0"
		}
		if status != wantStatus || retry != wantRetry || errorCode(out) != "THROTTLED" || out["extensions"] == nil {
			t.Errorf("429=%v: status %d, Retry-After %q, body %v", as429, status, retry, out)
		}
		if n := s.Counters(); n.Throttled != 1 || n.Mutations != 0 {
			t.Errorf("counters %+v", n)
		}
		s.Close()
	}
}
