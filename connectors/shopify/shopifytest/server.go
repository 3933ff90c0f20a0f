// Package shopifytest is an in-process stand-in for the Shopify Admin GraphQL API, just wide
// enough for the shopify connector's tests and benchmark. It follows the documented contract of
// the operations it implements:
//
//   - POST /admin/api/<version>/graphql.json with the X-Shopify-Access-Token header; a missing,
//     rotated or expired token gets 401 and Shopify's body
//     {"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}.
//   - POST /admin/oauth/access_token, the client credentials grant (form grant_type,
//     client_id, client_secret), answering {"access_token","scope","expires_in"} when
//     Config.ClientID is set.
//   - query productVariants(first, after, query: "sku:\"A\" OR sku:\"B\"") { nodes { sku
//     inventoryItem { id } } pageInfo { hasNextPage endCursor } }
//   - query locations(first, after) { nodes { id name } pageInfo { … } }
//   - mutation inventorySetQuantities(input: {name, reason, quantities: [{inventoryItemId,
//     locationId, quantity, changeFromQuantity}]}) @idempotent(key: "…") { inventoryAdjustmentGroup
//     { id } userErrors { code field message } }. From 2026-04 the directive and every
//     quantity's changeFromQuantity (null opts out of the compare-and-swap check) are required;
//     from 2026-10 ignoreCompareQuantity no longer exists. More than 250 quantities is a
//     MAX_INPUT_SIZE_EXCEEDED error. Per-quantity problems are userErrors with the path
//     ["input","quantities","<i>","<field>"] and InventorySetQuantitiesUserErrorCode codes; any
//     userError and nothing is applied (the stub is all-or-nothing). The same idempotency key
//     with the same variables answers the first result again without applying anything; with
//     other variables it is an IDEMPOTENCY_KEY_PARAMETER_MISMATCH userError.
//   - The cost-based leaky bucket: every answer carries extensions.cost {requestedQueryCost,
//     actualQueryCost, throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}}. A
//     request whose requested cost the bucket cannot cover is answered THROTTLED, as HTTP 200
//     {"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]} or, with
//     Config.Throttle429, as HTTP 429 with a Retry-After header and the same body.
//
// The stub parses no GraphQL: it recognises the operation by its root field and reads the
// variables, so callers must pass arguments as variables (the idempotency key excepted).
package shopifytest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultToken            = "shpat_test_token"
	DefaultMaximumAvailable = 1000
	DefaultRestoreRate      = 50
	DefaultMutationCost     = 10
	DefaultTokenTTL         = 24 * time.Hour
	// MaxQuantities is the most quantities one inventorySetQuantities accepts.
	MaxQuantities = 250
	// MaxQueryCost is the highest requested cost a single query may have.
	MaxQueryCost = 1000
)

// Config shapes a Server. Zero values take the defaults above.
type Config struct {
	Token string // the access token accepted from the start
	// ClientID and ClientSecret enable the client credentials grant; its tokens live TokenTTL.
	ClientID, ClientSecret string
	TokenTTL               time.Duration
	MaximumAvailable       float64  // bucket size in cost points
	RestoreRate            float64  // points restored per second
	MutationCost           int      // requested (and actual) cost of one inventorySetQuantities
	Throttle429            bool     // answer THROTTLED with HTTP 429 and Retry-After instead of 200
	Scopes                 []string // the app's access scopes, as currentAppInstallation reports them
}

// Counters are what the stub has seen and done since it started (or since ResetCounters).
type Counters struct {
	Requests        int // GraphQL requests, whatever the answer
	Throttled       int // answered THROTTLED (200 or 429)
	Throttled429    int // of those, answered with HTTP 429
	Unauthorized    int // answered 401
	Mutations       int // inventorySetQuantities calls executed (replays not included)
	Replays         int // inventorySetQuantities calls answered from the idempotency store
	Applied         int // quantities set by executed mutations
	UserErrors      int // userErrors returned
	VariantQueries  int // productVariants queries answered
	LocationQueries int // locations queries answered
	TokenGrants     int // tokens issued by the client credentials grant
}

// Mutation is one inventorySetQuantities request as received, for tests to inspect.
type Mutation struct {
	Query          string
	IdempotencyKey string
	Input          map[string]any
}

// Server is the stub; its URL is the connector's with.base_url.
type Server struct {
	*httptest.Server
	cfg Config

	mu        sync.Mutex
	tokens    map[string]time.Time // accepted token → expiry (zero: never)
	locations []location
	variants  []variant
	items     map[string]*item // inventory item GID → item
	idem      map[string]stored
	bucket    bucket
	counters  Counters
	mutations []Mutation
	nextID    int
}

type location struct{ id, name string }

type variant struct{ sku, itemID string }

// item is an inventory item and its levels: location GID → quantity name → quantity.
type item struct {
	sku        string
	nonMutable bool
	levels     map[string]map[string]int
}

// stored is the first answer given for an idempotency key.
type stored struct {
	params string
	data   map[string]any
}

// New starts a stub server; close it with Close.
func New(cfg Config) *Server {
	cfg = withDefaults(cfg)
	s := &Server{
		cfg:    cfg,
		tokens: map[string]time.Time{cfg.Token: {}},
		items:  map[string]*item{},
		idem:   map[string]stored{},
		bucket: newBucket(cfg.MaximumAvailable, cfg.RestoreRate),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/api/{version}/graphql.json", s.handleGraphQL)
	mux.HandleFunc("POST /admin/oauth/access_token", s.handleToken)
	s.Server = httptest.NewServer(mux)
	return s
}

func withDefaults(cfg Config) Config {
	if cfg.Token == "" {
		cfg.Token = DefaultToken
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.MaximumAvailable <= 0 {
		cfg.MaximumAvailable = DefaultMaximumAvailable
	}
	if cfg.RestoreRate <= 0 {
		cfg.RestoreRate = DefaultRestoreRate
	}
	if cfg.MutationCost <= 0 {
		cfg.MutationCost = DefaultMutationCost
	}
	return cfg
}

// AddLocation creates an active location and returns its GID.
func (s *Server) AddLocation(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.gid("Location")
	s.locations = append(s.locations, location{id: id, name: name})
	return id
}

// AddVariant creates a product variant with this SKU, its inventory item stocked (at 0) at the
// given location GIDs, and returns the inventory item's GID. SKUs need not be unique.
func (s *Server) AddVariant(sku string, locationIDs ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addVariant(sku, locationIDs)
}

func (s *Server) addVariant(sku string, locationIDs []string) string {
	id := s.gid("InventoryItem")
	it := &item{sku: sku, levels: map[string]map[string]int{}}
	for _, loc := range locationIDs {
		it.levels[loc] = map[string]int{"available": 0, "on_hand": 0}
	}
	s.items[id] = it
	s.variants = append(s.variants, variant{sku: sku, itemID: id})
	return id
}

// ReplaceVariant deletes the variants with this SKU and their inventory items (their GIDs then
// answer INVALID_INVENTORY_ITEM) and creates a new one stocked at the same locations, keeping
// the quantities. It returns the new inventory item's GID.
func (s *Server) ReplaceVariant(sku string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var locs []string
	var levels map[string]map[string]int
	kept := s.variants[:0]
	for _, v := range s.variants {
		if v.sku != sku {
			kept = append(kept, v)
			continue
		}
		for loc := range s.items[v.itemID].levels {
			locs = append(locs, loc)
		}
		levels = s.items[v.itemID].levels
		delete(s.items, v.itemID)
	}
	s.variants = kept
	id := s.addVariant(sku, locs)
	if levels != nil {
		s.items[id].levels = levels
	}
	return id
}

// SetNonMutable makes the inventory items of this SKU refuse changes (NON_MUTABLE_INVENTORY_ITEM),
// as bundle parents do.
func (s *Server) SetNonMutable(sku string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.variants {
		if v.sku == sku {
			s.items[v.itemID].nonMutable = true
		}
	}
}

// SetQuantity sets a level directly, as a merchant editing stock in the admin would.
func (s *Server) SetQuantity(itemID, locationID, name string, q int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lv := s.level(itemID, locationID); lv != nil {
		setLevel(lv, name, q)
	}
}

// Quantity returns a level's quantity by name ("available" or "on_hand"), and whether the item
// is stocked at the location.
func (s *Server) Quantity(itemID, locationID, name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lv := s.level(itemID, locationID)
	if lv == nil {
		return 0, false
	}
	return lv[name], true
}

// QuantityOf is Quantity by SKU and location name (the SKU's first variant).
func (s *Server) QuantityOf(sku, locationName, name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.variants {
		for _, l := range s.locations {
			if v.sku == sku && l.name == locationName {
				if lv := s.level(v.itemID, l.id); lv != nil {
					return lv[name], true
				}
			}
		}
	}
	return 0, false
}

func (s *Server) level(itemID, locationID string) map[string]int {
	it := s.items[itemID]
	if it == nil {
		return nil
	}
	return it.levels[locationID]
}

// SetToken rotates the access token: only tok is accepted from now on.
func (s *Server) SetToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{tok: {}}
}

// ExpireTokens makes every token issued so far invalid.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
}

// Drain empties the cost bucket, as another client of the same app and store would.
func (s *Server) Drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bucket.drain(time.Now())
}

// Bucket returns the bucket's state now: currently available points, maximum and restore rate.
func (s *Server) Bucket() (available, maximum, restoreRate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bucket.available(time.Now()), s.bucket.max, s.bucket.rate
}

// Counters returns a copy of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters
}

// ResetCounters zeroes the counters and forgets the recorded mutations.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters = Counters{}
	s.mutations = nil
}

// Mutations returns the inventorySetQuantities requests received, replays included.
func (s *Server) Mutations() []Mutation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mutation(nil), s.mutations...)
}

func (s *Server) gid(kind string) string {
	s.nextID++
	return fmt.Sprintf("gid://shopify/%s/%d", kind, 1000+s.nextID)
}
