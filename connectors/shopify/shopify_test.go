package shopify

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/connectors/shopify/shopifytest"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// env is a stub shop with SKUs stocked at warehouses.
type env struct {
	t     *testing.T
	srv   *shopifytest.Server
	locs  map[string]string // warehouse → location GID
	items map[string]string // SKU → inventory item GID
}

// newEnv starts a stub with skus SKUs ("SKU-000", …) stocked at every warehouse.
func newEnv(t *testing.T, cfg shopifytest.Config, skus int, warehouses ...string) *env {
	t.Helper()
	e := &env{t: t, srv: shopifytest.New(cfg), locs: map[string]string{}, items: map[string]string{}}
	t.Cleanup(e.srv.Close)
	ids := make([]string, len(warehouses))
	for i, wh := range warehouses {
		ids[i] = e.srv.AddLocation(wh)
		e.locs[wh] = ids[i]
	}
	for i := range skus {
		sku := skuName(i)
		e.items[sku] = e.srv.AddVariant(sku, ids...)
	}
	return e
}

func skuName(i int) string { return fmt.Sprintf("SKU-%03d", i) }

// open builds a connector on the stub; kv are extra or overriding settings.
func (e *env) open(kv ...any) sink.Connector {
	e.t.Helper()
	c, err := New(context.Background(), e.params(kv...))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *env) params(kv ...any) sink.Params {
	with := map[string]any{"base_url": e.srv.URL, "token": shopifytest.DefaultToken}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(with, kv[i].(string))
			continue
		}
		with[kv[i].(string)] = kv[i+1]
	}
	return sink.Params{Sink: "storefront-stock", With: with, Key: []string{"sku", "warehouse"}}
}

// quantity returns the stub's available quantity of sku at warehouse.
func (e *env) quantity(sku, wh string) int {
	e.t.Helper()
	q, ok := e.srv.Quantity(e.items[sku], e.locs[wh], "available")
	if !ok {
		e.t.Fatalf("%s is not stocked at %s", sku, wh)
	}
	return q
}

// upsert is a record setting sku at wh to qty, from the change at lsn, read at offset.
func upsert(sku, wh string, qty int, lsn, offset int64) sink.Record {
	return sink.Record{Op: sink.OpUpsert, Key: map[string]any{"sku": sku, "warehouse": wh},
		Fields: map[string]any{"sku": sku, "warehouse": wh, "available": int64(qty)},
		Event:  &change.Event{Op: change.OpUpdate, Source: change.Source{LSN: lsn, TxID: lsn / 10}},
		Topic:  "wh.public.inventory", Partition: 0, Offset: offset}
}

func batchOf(recs ...sink.Record) *sink.Batch {
	return &sink.Batch{Sink: "storefront-stock", Topic: "wh.public.inventory", Records: recs}
}

// grid makes one upsert per (SKU, warehouse): quantity base+i, LSNs from lsn, offsets from 0.
func grid(skus int, warehouses []string, base int, lsn int64) []sink.Record {
	var recs []sink.Record
	for s := range skus {
		for _, wh := range warehouses {
			i := len(recs)
			recs = append(recs, upsert(skuName(s), wh, base+i, lsn+int64(i), int64(i)))
		}
	}
	return recs
}

func apply(c sink.Connector, b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Apply(ctx, b)
}

// assertAll checks that every record of recs set its level.
func (e *env) assertAll(recs []sink.Record) {
	e.t.Helper()
	for _, r := range recs {
		sku, wh := r.Key["sku"].(string), r.Key["warehouse"].(string)
		if got, want := e.quantity(sku, wh), int(r.Fields["available"].(int64)); got != want {
			e.t.Fatalf("%s at %s = %d, want %d", sku, wh, got, want)
		}
	}
}

var warehouses3 = []string{"WH-A", "WH-B", "WH-C"}

func TestHappyPathBatchesOf250AndCachedLookups(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 200, warehouses3...)
	c := e.open()
	recs := grid(200, warehouses3, 1, 1000)
	if err := apply(c, batchOf(recs...)); err != nil {
		t.Fatal(err)
	}
	e.assertAll(recs)
	var sizes []int
	for _, m := range e.srv.Mutations() {
		sizes = append(sizes, len(m.Input["quantities"].([]any)))
	}
	if fmt.Sprint(sizes) != "[250 250 100]" {
		t.Errorf("calls of %v quantities, want [250 250 100]", sizes)
	}
	n := e.srv.Counters()
	if n.VariantQueries != 4 || n.LocationQueries != 1 || n.Applied != 600 || n.Throttled != 0 {
		t.Errorf("counters %+v: want 4 SKU lookups (50 a query), 1 location lookup, 600 applied", n)
	}
	again := grid(200, warehouses3, 5000, 9000)
	if err := apply(c, batchOf(again...)); err != nil {
		t.Fatal(err)
	}
	e.assertAll(again)
	if m := e.srv.Counters(); m.VariantQueries != 4 || m.LocationQueries != 1 || m.Mutations != 6 {
		t.Errorf("second batch: counters %+v; lookups must come from the cache", m)
	}
}

func TestRequestShape(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 1, "WH-A")
	c := e.open("reason", "cycle_count_available", "quantity_name", "on_hand")
	if err := apply(c, batchOf(upsert("SKU-000", "WH-A", 7, 100, 0))); err != nil {
		t.Fatal(err)
	}
	m := e.srv.Mutations()[0]
	if !regexp.MustCompile(`@idempotent\(key: "[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"\)`).MatchString(m.Query) {
		t.Errorf("mutation has no UUID-shaped @idempotent key:\n%s", m.Query)
	}
	q := m.Input["quantities"].([]any)[0].(map[string]any)
	if from, ok := q["changeFromQuantity"]; !ok || from != nil {
		t.Errorf("changeFromQuantity must be sent as null, got %v (present %v)", from, ok)
	}
	if _, ok := m.Input["ignoreCompareQuantity"]; ok {
		t.Error("ignoreCompareQuantity is gone from 2026-10 and must not be sent")
	}
	if m.Input["name"] != "on_hand" || m.Input["reason"] != "cycle_count_available" {
		t.Errorf("input %v", m.Input)
	}
	if got, _ := e.srv.Quantity(e.items["SKU-000"], e.locs["WH-A"], "on_hand"); got != 7 {
		t.Errorf("on_hand = %d, want 7", got)
	}
}

func TestPartialFailureGoesToDLQRestApplied(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 5, "WH-A", "WH-B")
	e.srv.SetNonMutable("SKU-001")
	e.items["ONLY-A"] = e.srv.AddVariant("ONLY-A", e.locs["WH-A"]) // not stocked at WH-B
	c := e.open()
	recs := grid(5, []string{"WH-A"}, 10, 100) // indexes 0..4, SKU-001 at 1
	recs = append(recs, upsert("ONLY-A", "WH-B", 3, 200, 5))
	err := apply(c, batchOf(recs...))
	assertRejected(t, err, map[int]string{
		1: "NON_MUTABLE_INVENTORY_ITEM: The specified inventory item is not allowed to be adjusted via API",
		5: "ITEM_NOT_STOCKED_AT_LOCATION: The specified inventory item is not stocked at the location.",
	})
	for _, i := range []int{0, 2, 3, 4} {
		if got := e.quantity(skuName(i), "WH-A"); got != 10+i {
			t.Errorf("%s = %d, want %d: records beside rejected ones must be applied", skuName(i), got, 10+i)
		}
	}
	if got := e.quantity("SKU-001", "WH-A"); got != 0 {
		t.Errorf("rejected level changed to %d", got)
	}
}

// assertRejected checks err is a non-retryable PartialError with these indexes and reasons.
func assertRejected(t *testing.T, err error, want map[int]string) {
	t.Helper()
	var pe *sink.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want *sink.PartialError, got %v", err)
	}
	if sink.IsRetryable(err) {
		t.Error("partial error marked retryable")
	}
	if len(pe.Failed) != len(want) {
		t.Fatalf("failed %+v, want %v", pe.Failed, want)
	}
	for _, f := range pe.Failed {
		if w, ok := want[f.Index]; !ok || !strings.Contains(f.Reason, w) {
			t.Errorf("failure %+v, want one of %v", f, want)
		}
	}
}

func TestThrottledAnswersArePacedAndRetried(t *testing.T) {
	for _, as429 := range []bool{false, true} {
		t.Run(fmt.Sprintf("429=%v", as429), func(t *testing.T) {
			e := newEnv(t, shopifytest.Config{RestoreRate: 200, Throttle429: as429}, 100, warehouses3...)
			c := e.open()
			if err := apply(c, batchOf(grid(100, warehouses3, 0, 100)...)); err != nil {
				t.Fatal(err)
			}
			e.srv.Drain() // another client of the app spent the bucket
			recs := grid(100, warehouses3, 50, 1000)
			if err := apply(c, batchOf(recs...)); err != nil {
				t.Fatalf("THROTTLED must be waited out, got %v", err)
			}
			e.assertAll(recs)
			n := e.srv.Counters()
			if n.Throttled == 0 || (as429 && n.Throttled429 == 0) {
				t.Errorf("counters %+v: expected THROTTLED answers", n)
			}
			if n.Applied != 600 {
				t.Errorf("applied %d quantities, want 600", n.Applied)
			}
		})
	}
}

func TestPacesToTheBucketWithoutThrottles(t *testing.T) {
	whs := []string{"W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12"}
	e := newEnv(t, shopifytest.Config{MaximumAvailable: 300, RestoreRate: 300, MutationCost: 50}, 250, whs...)
	c := e.open()
	recs := grid(250, whs, 0, 100) // 3000 levels: 12 calls of 50 points, 5 lookups
	start := time.Now()
	if err := apply(c, batchOf(recs...)); err != nil {
		t.Fatal(err)
	}
	e.assertAll(recs)
	n := e.srv.Counters()
	if n.Throttled != 0 {
		t.Errorf("%d THROTTLED answers; pacing should avoid them (counters %+v)", n.Throttled, n)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("took %v: 1100+ points through a 300-point bucket at 300/s must take over a second", el)
	}
}

func TestTokenExpiryIsRetryable(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 3, "WH-A")
	core, logs := observer.New(zap.DebugLevel)
	p := e.params()
	p.Log = zap.New(core)
	c, err := New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(c, batchOf(grid(3, []string{"WH-A"}, 1, 100)...)); err != nil {
		t.Fatal(err)
	}
	e.srv.ExpireTokens()
	recs := grid(3, []string{"WH-A"}, 20, 200)
	err = apply(c, batchOf(recs...))
	var pe *sink.PartialError
	if !sink.IsRetryable(err) || errors.As(err, &pe) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("expired token: want a retryable error naming 401, got %v", err)
	}
	if strings.Contains(err.Error(), shopifytest.DefaultToken) {
		t.Error("the error quotes the token")
	}
	e.srv.SetToken(shopifytest.DefaultToken) // the owner puts a valid token back
	if err := apply(c, batchOf(recs...)); err != nil {
		t.Fatal(err)
	}
	e.assertAll(recs)
	for _, entry := range logs.All() {
		if strings.Contains(fmt.Sprint(entry.Message, entry.ContextMap()), shopifytest.DefaultToken) {
			t.Errorf("log entry shows the token: %v", entry)
		}
	}
}

func TestClientCredentialsRenewedOn401(t *testing.T) {
	e := newEnv(t, shopifytest.Config{ClientID: "app-id", ClientSecret: "s3cret"}, 3, "WH-A")
	c := e.open("token", nil, "client_id", "app-id", "client_secret", "s3cret")
	if err := apply(c, batchOf(grid(3, []string{"WH-A"}, 1, 100)...)); err != nil {
		t.Fatal(err)
	}
	e.srv.ExpireTokens()
	recs := grid(3, []string{"WH-A"}, 40, 200)
	if err := apply(c, batchOf(recs...)); err != nil {
		t.Fatalf("an expired granted token must be renewed within the batch, got %v", err)
	}
	e.assertAll(recs)
	if n := e.srv.Counters(); n.TokenGrants != 2 || n.Unauthorized != 1 {
		t.Errorf("counters %+v: want 2 grants and 1 401", n)
	}
}

func TestDuplicatedChangeAppliedOnce(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 4, "WH-A")
	recs := grid(4, []string{"WH-A"}, 10, 500)
	if err := apply(e.open(), batchOf(recs...)); err != nil {
		t.Fatal(err)
	}
	// The merchant corrects a level by hand; then the same changes arrive again, captured a
	// second time after a capture crash: same LSNs, other offsets, read by a restarted sink.
	e.srv.SetQuantity(e.items["SKU-002"], e.locs["WH-A"], "available", 99)
	dups := make([]sink.Record, len(recs))
	for i, r := range recs {
		r.Offset += 1000
		dups[i] = r
	}
	restarted := e.open()
	if err := apply(restarted, batchOf(dups...)); err != nil {
		t.Fatal(err)
	}
	n := e.srv.Counters()
	if n.Mutations != 1 || n.Replays != 1 || n.Applied != 4 {
		t.Errorf("counters %+v: the duplicate must be answered from the idempotency store, not applied", n)
	}
	if got := e.quantity("SKU-002", "WH-A"); got != 99 {
		t.Errorf("SKU-002 = %d: the duplicate was applied again", got)
	}
	// In the same process, a duplicate grouped with a new change is left out of the call.
	next := upsert("SKU-003", "WH-A", 77, 900, 2000)
	if err := apply(restarted, batchOf(dups[0], next)); err != nil {
		t.Fatal(err)
	}
	last := e.srv.Mutations()[len(e.srv.Mutations())-1]
	if q := last.Input["quantities"].([]any); len(q) != 1 || e.quantity("SKU-003", "WH-A") != 77 {
		t.Errorf("call carried %d quantities, want only the new change", len(q))
	}
}

func TestIdempotencyKeyFollowsTheChange(t *testing.T) {
	lv := func(lsn, offset int64, qty int) *level {
		r := upsert("A", "W", qty, lsn, offset)
		pos := recordPosition(&r)
		return &level{ident: changeIdentity(&r, pos), itemID: "gid://shopify/InventoryItem/1", locID: "gid://shopify/Location/1", quantity: qty}
	}
	k := func(levels ...*level) string { return idempotencyKey("s", "available", "correction", levels) }
	base := k(lv(100, 1, 5))
	if k(lv(100, 77, 5)) != base {
		t.Error("the same change at another offset must keep its key")
	}
	if k(lv(101, 1, 5)) == base || k(lv(100, 1, 6)) == base || idempotencyKey("t", "available", "correction", []*level{lv(100, 1, 5)}) == base {
		t.Error("another change, quantity or sink must change the key")
	}
	noEvent := sink.Record{Topic: "t", Partition: 1, Offset: 9}
	if id := changeIdentity(&noEvent, recordPosition(&noEvent)); id != "kafka:t/1/9" {
		t.Errorf("identity without a source position = %q", id)
	}
}

func TestInvalidInventoryItemRefreshesTheLookup(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 3, "WH-A")
	c := e.open()
	if err := apply(c, batchOf(grid(3, []string{"WH-A"}, 1, 100)...)); err != nil {
		t.Fatal(err)
	}
	e.items["SKU-001"] = e.srv.ReplaceVariant("SKU-001") // the cached item id is now invalid
	before := e.srv.Counters()
	recs := grid(3, []string{"WH-A"}, 30, 200)
	if err := apply(c, batchOf(recs...)); err != nil {
		t.Fatalf("a stale item id must be looked up again, got %v", err)
	}
	e.assertAll(recs)
	n := e.srv.Counters()
	if n.VariantQueries-before.VariantQueries != 1 || n.UserErrors-before.UserErrors != 1 {
		t.Errorf("counters %+v (before %+v): want one INVALID_INVENTORY_ITEM and one new lookup", n, before)
	}
}

func TestUnknownSKUAndWarehouseFail(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 2, "WH-A")
	c := e.open()
	recs := []sink.Record{upsert("SKU-000", "WH-A", 4, 100, 0), upsert("NOPE", "WH-A", 1, 101, 1),
		upsert("SKU-001", "Atlantis", 1, 102, 2), upsert("SKU-001", "WH-A", 6, 103, 3)}
	assertRejected(t, apply(c, batchOf(recs...)), map[int]string{
		1: `unknown SKU "NOPE"`, 2: `unknown warehouse "Atlantis"`})
	if e.quantity("SKU-000", "WH-A") != 4 || e.quantity("SKU-001", "WH-A") != 6 {
		t.Error("known levels were not applied")
	}
}

func TestConfiguredLocationsNeedNoLookup(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 1, "Main warehouse")
	c := e.open("locations", map[string]any{"WH-1": e.locs["Main warehouse"]})
	if err := apply(c, batchOf(upsert("SKU-000", "WH-1", 8, 100, 0))); err != nil {
		t.Fatal(err)
	}
	if e.quantity("SKU-000", "Main warehouse") != 8 || e.srv.Counters().LocationQueries != 0 {
		t.Errorf("counters %+v", e.srv.Counters())
	}
}

func TestDeleteSetsZeroTruncateRefused(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 1, "WH-A")
	c := e.open()
	if err := apply(c, batchOf(upsert("SKU-000", "WH-A", 9, 100, 0))); err != nil {
		t.Fatal(err)
	}
	del := sink.Record{Op: sink.OpDelete, Key: map[string]any{"sku": "SKU-000", "warehouse": "WH-A"},
		Event: &change.Event{Op: change.OpDelete, Source: change.Source{LSN: 200, TxID: 20}}, Offset: 1}
	trunc := sink.Record{Op: sink.OpTruncate, Offset: 2}
	assertRejected(t, apply(c, batchOf(del, trunc)), map[int]string{1: "truncate is not supported"})
	if got := e.quantity("SKU-000", "WH-A"); got != 0 {
		t.Errorf("after delete: %d, want 0", got)
	}
}

func TestCompareQuantity(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 2, "WH-A")
	c := e.open("ignore_compare_quantity", false, "compare_field", "previous")
	ok := upsert("SKU-000", "WH-A", 7, 100, 0)
	ok.Fields["previous"] = int64(0)
	stale := upsert("SKU-001", "WH-A", 7, 101, 1)
	stale.Fields["previous"] = int64(3) // Shopify has 0
	assertRejected(t, apply(c, batchOf(ok, stale)), map[int]string{1: "CHANGE_FROM_QUANTITY_STALE"})
	if e.quantity("SKU-000", "WH-A") != 7 || e.quantity("SKU-001", "WH-A") != 0 {
		t.Error("compare-and-swap not honoured")
	}
}

func TestBadRecordsFailAlone(t *testing.T) {
	e := newEnv(t, shopifytest.Config{}, 1, "WH-A")
	c := e.open()
	frac := upsert("SKU-000", "WH-A", 1, 100, 0)
	frac.Fields["available"] = 2.5
	huge := upsert("SKU-000", "WH-A", 1, 101, 1)
	huge.Fields["available"] = int64(2_000_000_000)
	noSKU := upsert("SKU-000", "WH-A", 1, 102, 2)
	delete(noSKU.Key, "sku")
	delete(noSKU.Fields, "sku")
	assertRejected(t, apply(c, batchOf(frac, huge, noSKU)), map[int]string{
		0: "not a whole number", 1: "outside Shopify's range", 2: `no "sku" (with.sku_field)`})
	if n := e.srv.Counters().Requests; n != 0 {
		t.Errorf("%d requests for a batch of bad records", n)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"token": "x"}, "with.shop: required"},
		{map[string]any{"shop": "https://x.myshopify.com", "token": "x"}, "with.shop:"},
		{map[string]any{"shop": "x.myshopify.com", "base_url": "http://h", "token": "x"}, "with.shop:"},
		{map[string]any{"base_url": "ftp://h", "token": "x"}, "with.base_url:"},
		{map[string]any{"shop": "x.myshopify.com"}, "with.token: required"},
		{map[string]any{"shop": "x.myshopify.com", "client_id": "a"}, "with.client_secret:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "client_id": "a", "client_secret": "b"}, "with.token:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "api_version": "2025-01"}, "with.api_version: 2025-01 predates"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "api_version": "latest"}, "with.api_version:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "quantity_name": "committed"}, "with.quantity_name:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "reason": "because"}, "with.reason:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "ignore_compare_quantity": "yes"}, "with.ignore_compare_quantity:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "ignore_compare_quantity": false}, "with.compare_field: required"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "compare_field": "prev"}, "with.compare_field:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "sku_field": 3}, "with.sku_field:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "locations": map[string]any{"W": "123"}}, "with.locations.W:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "timeout": "soon"}, "with.timeout:"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "colour": "red"}, "with.colour: unknown setting"},
		{map[string]any{"shop": "x.myshopify.com", "token": "x", "soft_delete_column": "gone"}, "with.soft_delete_column:"},
	} {
		_, err := New(context.Background(), sink.Params{Sink: "s", With: tc.with})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q…", tc.with, err, tc.want)
		}
	}
	if _, err := New(context.Background(), sink.Params{Sink: "s", With: map[string]any{
		"shop": "My-Store.myshopify.com", "token": "x", "api_version": "unstable", "timeout": "5s",
		"locations": map[string]any{"W": "gid://shopify/Location/1"}}}); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
}
