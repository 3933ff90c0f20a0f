package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// The tests run against a throwaway Redis server on loopback started from the installed
// redis-server (pkg/testenv); BACKFLOW_TEST_REDIS_URL names another server instead. Tests keep
// apart by key prefix (testPrefix).
var testRedisURL string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests starts the server unless BACKFLOW_TEST_REDIS_URL names one, and stops it after the
// tests.
func runTests(m *testing.M) int {
	testRedisURL = os.Getenv("BACKFLOW_TEST_REDIS_URL")
	if testRedisURL == "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		server, err := testenv.StartRedis(ctx)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv: start Redis:", err)
			return 1
		}
		defer func() {
			if err := server.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "testenv: close Redis:", err)
			}
		}()
		testRedisURL = server.URL(0)
	}
	return m.Run()
}

// redisURL is the Redis server the tests use.
func redisURL() string { return testRedisURL }

// direct returns a plain client on the test server, failing the test when it is down.
func direct(t *testing.T) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("no Redis at %s: %v", redisURL(), err)
	}
	return c
}

// testPrefix returns a random key prefix whose keys are removed when the test ends.
func testPrefix(t *testing.T, rdb *goredis.Client) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "bftest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	return prefix
}

// open builds a connector with the given settings on the test server.
func open(t *testing.T, with map[string]any, key ...string) *connector {
	t.Helper()
	if _, ok := with["url"]; !ok {
		with["url"] = redisURL()
	}
	c, err := New(context.Background(), sink.Params{Sink: "test", With: with, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*connector)
}

// upsert makes an upsert record keyed by the named fields.
func upsert(fields map[string]any, keyNames ...string) sink.Record {
	r := sink.Record{Op: sink.OpUpsert, Key: map[string]any{}, Fields: fields, KeyOrder: keyNames}
	for _, k := range keyNames {
		r.Key[k] = fields[k]
	}
	return r
}

// del makes a delete record.
func del(key map[string]any) sink.Record {
	return sink.Record{Op: sink.OpDelete, Key: key}
}

// apply applies records as one batch.
func apply(t *testing.T, c *connector, recs ...sink.Record) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Apply(ctx, &sink.Batch{Sink: "test", Topic: "wh.public.stock", Records: recs})
}

// mustApply applies records and fails on any error.
func mustApply(t *testing.T, c *connector, recs ...sink.Record) {
	t.Helper()
	if err := apply(t, c, recs...); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func hgetall(t *testing.T, rdb *goredis.Client, key string) map[string]string {
	t.Helper()
	m, err := rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHashUpsertUpdateDelete(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "item:{id}"}, "id")
	ts := time.Date(2024, 5, 1, 10, 0, 0, 1000, time.FixedZone("x", 3600))
	mustApply(t, c, upsert(map[string]any{
		"id": int64(7), "name": "widget", "qty": int32(3), "price": 12.5, "ratio": float32(0.25),
		"active": true, "at": ts, "blob": []byte{0xff, 0x00, 'a'}, "tags": []any{"a", int64(1)},
		"meta": map[string]any{"k": "v"}, "amount": "12.340", "gone": nil,
	}, "id"))
	got := hgetall(t, rdb, p+"item:7")
	want := map[string]string{
		"id": "7", "name": "widget", "qty": "3", "price": "12.5", "ratio": "0.25", "active": "true",
		"at": "2024-05-01T09:00:00.000001Z", "blob": "\xff\x00a", "tags": `["a",1]`, "meta": `{"k":"v"}`,
		"amount": "12.340",
	}
	assertMap(t, got, want)

	mustApply(t, c, upsert(map[string]any{"id": int64(7), "qty": int32(4), "name": nil}, "id"))
	got = hgetall(t, rdb, p+"item:7")
	if got["qty"] != "4" || got["price"] != "12.5" {
		t.Errorf("after update: %v", got)
	}
	if _, ok := got["name"]; ok {
		t.Errorf("nil value should remove the field: %v", got)
	}

	mustApply(t, c, del(map[string]any{"id": int64(7)}))
	if n := rdb.Exists(context.Background(), p+"item:7").Val(); n != 0 {
		t.Errorf("key still exists after delete")
	}
}

func assertMap(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields %v, want %d", len(got), got, len(want))
	}
}

func TestCompositeKeyTemplate(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "stock:{sku}:{warehouse}"}, "sku", "warehouse")
	mustApply(t, c,
		upsert(map[string]any{"sku": "A-1", "warehouse": int64(3), "available": int64(10)}, "sku", "warehouse"),
		upsert(map[string]any{"sku": "A-1", "warehouse": int64(4), "available": int64(0)}, "sku", "warehouse"),
	)
	if v := rdb.HGet(context.Background(), p+"stock:A-1:3", "available").Val(); v != "10" {
		t.Errorf("stock:A-1:3 available = %q", v)
	}
	if v := rdb.HGet(context.Background(), p+"stock:A-1:4", "available").Val(); v != "0" {
		t.Errorf("stock:A-1:4 available = %q", v)
	}
	mustApply(t, c, del(map[string]any{"sku": "A-1", "warehouse": int64(3)}))
	if n := rdb.Exists(context.Background(), p+"stock:A-1:3", p+"stock:A-1:4").Val(); n != 1 {
		t.Errorf("after deleting one of two keys, %d exist", n)
	}
}

func TestTTL(t *testing.T) {
	rdb := direct(t)
	for _, mode := range []string{ModeHash, ModeJSON} {
		t.Run(mode, func(t *testing.T) {
			p := testPrefix(t, rdb)
			c := open(t, map[string]any{"key": p + "s:{id}", "ttl": "90s", "mode": mode}, "id")
			mustApply(t, c, upsert(map[string]any{"id": "x", "v": int64(1)}, "id"))
			ttl := rdb.PTTL(context.Background(), p+"s:x").Val()
			if ttl <= 80*time.Second || ttl > 90*time.Second {
				t.Errorf("PTTL = %v, want about 90s", ttl)
			}
		})
	}
}

func TestJSONMode(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "doc:{id}", "mode": "json"}, "id")
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	mustApply(t, c, upsert(map[string]any{"id": int64(1), "title": "t1", "body": "toasted", "at": ts, "n": nil, "tags": []any{"a"}}, "id"))
	// Numbers other writers stored must survive the merge exactly.
	raw := rdb.Get(context.Background(), p+"doc:1").Val()
	raw = strings.TrimSuffix(raw, "}") + `,"big":12345678901234567890,"empty":[]}`
	rdb.Set(context.Background(), p+"doc:1", raw, 0)

	mustApply(t, c, upsert(map[string]any{"id": int64(1), "title": "t2"}, "id"))
	got := rdb.Get(context.Background(), p+"doc:1").Val()
	want := `{"at":"2024-05-01T10:00:00.000000Z","big":12345678901234567890,"body":"toasted","empty":[],"id":1,"n":null,"tags":["a"],"title":"t2"}`
	if got != want {
		t.Errorf("stored JSON\n got %s\nwant %s", got, want)
	}
	mustApply(t, c, del(map[string]any{"id": int64(1)}))
	if n := rdb.Exists(context.Background(), p+"doc:1").Val(); n != 0 {
		t.Error("key still exists after delete")
	}
}

func TestJSONModeNotAnObject(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "doc:{id}", "mode": "json"}, "id")
	rdb.Set(context.Background(), p+"doc:2", "plain text", 0)
	rdb.RPush(context.Background(), p+"doc:3", "x")
	err := apply(t, c,
		upsert(map[string]any{"id": int64(1), "v": "a"}, "id"),
		upsert(map[string]any{"id": int64(2), "v": "b"}, "id"),
		upsert(map[string]any{"id": int64(3), "v": "c"}, "id"),
	)
	assertRejected(t, err, 1, 2)
	if v := rdb.Get(context.Background(), p+"doc:1").Val(); v != `{"id":1,"v":"a"}` {
		t.Errorf("doc:1 = %q", v)
	}
	if v := rdb.Get(context.Background(), p+"doc:2").Val(); v != "plain text" {
		t.Errorf("doc:2 was overwritten: %q", v)
	}
}

// assertRejected checks that err is a non-retryable PartialError naming exactly indexes.
func assertRejected(t *testing.T, err error, indexes ...int) {
	t.Helper()
	var pe *sink.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want *sink.PartialError, got %v", err)
	}
	if sink.IsRetryable(err) {
		t.Errorf("partial error is marked retryable")
	}
	if len(pe.Failed) != len(indexes) {
		t.Fatalf("rejected %+v, want indexes %v", pe.Failed, indexes)
	}
	for i, f := range pe.Failed {
		if f.Index != indexes[i] || f.Reason == "" {
			t.Errorf("rejected[%d] = %+v, want index %d with a reason", i, f, indexes[i])
		}
	}
}

func TestTruncateByPattern(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	ctx := context.Background()
	c := open(t, map[string]any{"key": p + "stock:{sku}:{wh}"}, "sku", "wh")
	var recs []sink.Record
	for i := range 2500 {
		recs = append(recs, upsert(map[string]any{"sku": "s", "wh": int64(i), "q": int64(i)}, "sku", "wh"))
	}
	mustApply(t, c, recs...)
	rdb.Set(ctx, p+"other:1", "keep", 0)
	rdb.Set(ctx, p+"stock-x", "keep", 0) // does not match p+"stock:*:*"

	mustApply(t, c,
		upsert(map[string]any{"sku": "before", "wh": int64(1), "q": int64(1)}, "sku", "wh"),
		sink.Record{Op: sink.OpTruncate},
		upsert(map[string]any{"sku": "after", "wh": int64(1), "q": int64(1)}, "sku", "wh"),
	)
	keys := rdb.Keys(ctx, p+"*").Val()
	if len(keys) != 3 {
		t.Fatalf("after truncate keys = %v", keys)
	}
	for _, k := range []string{p + "other:1", p + "stock-x", p + "stock:after:1"} {
		if rdb.Exists(ctx, k).Val() != 1 {
			t.Errorf("%s missing after truncate", k)
		}
	}
}

func TestKeyValuesEscapeSeparators(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "stock:{sku}/{wh}"}, "sku", "wh")
	mustApply(t, c,
		upsert(map[string]any{"sku": "a:b", "wh": "c", "q": int64(1)}, "sku", "wh"),
		upsert(map[string]any{"sku": "a", "wh": "b:c", "q": int64(2)}, "sku", "wh"),
		upsert(map[string]any{"sku": "a/b", "wh": "c", "q": int64(3)}, "sku", "wh"),
		upsert(map[string]any{"sku": "a", "wh": "b/c", "q": int64(4)}, "sku", "wh"),
		upsert(map[string]any{"sku": "a%3Ab", "wh": "c", "q": int64(5)}, "sku", "wh"),
	)
	for key, q := range map[string]string{"stock:a%3Ab/c": "1", "stock:a/b%3Ac": "2", "stock:a%2Fb/c": "3",
		"stock:a/b%2Fc": "4", "stock:a%253Ab/c": "5"} {
		if v := rdb.HGet(context.Background(), p+key, "q").Val(); v != q {
			t.Errorf("%s: q = %q, want %q", key, v, q)
		}
	}
}

func TestTruncateRemovesOnlyItsTemplatesKeys(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	ctx := context.Background()
	one := open(t, map[string]any{"key": p + "stock:{sku}"}, "sku")
	two := open(t, map[string]any{"key": p + "stock:{sku}:{wh}"}, "sku", "wh")
	mustApply(t, one, upsert(map[string]any{"sku": "a:b", "q": int64(1)}, "sku"), upsert(map[string]any{"sku": "c", "q": int64(1)}, "sku"))
	mustApply(t, two, upsert(map[string]any{"sku": "a", "wh": "b", "q": int64(2)}, "sku", "wh"))
	rdb.Set(ctx, p+"stock:%zz", "keep", 0) // not an escape the connector writes

	mustApply(t, one, sink.Record{Op: sink.OpTruncate})
	keys := rdb.Keys(ctx, p+"*").Val()
	slices.Sort(keys)
	if want := []string{p + "stock:%zz", p + "stock:a:b"}; !slices.Equal(keys, want) {
		t.Fatalf("after truncating stock:{sku}, keys %v; want %v", keys, want)
	}
	mustApply(t, two, sink.Record{Op: sink.OpTruncate})
	if keys := rdb.Keys(ctx, p+"*").Val(); len(keys) != 1 {
		t.Fatalf("after truncating stock:{sku}:{wh}, keys %v", keys)
	}
}

func TestKeyTemplateOwnsWhatItRenders(t *testing.T) {
	tpl, err := parseKeyTemplate("s:{a}.{b}x")
	if err != nil {
		t.Fatal(err)
	}
	if tpl.seps != ":." {
		t.Fatalf("separators %q", tpl.seps)
	}
	for _, vals := range [][2]string{{"1", "2"}, {"1.2", "3"}, {"1", "2.3"}, {"%", "x:"}, {"", ""}, {"ü", "x"}} {
		key, err := tpl.render(map[string]any{"a": vals[0], "b": vals[1]})
		if err != nil {
			t.Fatal(err)
		}
		if !tpl.owns(key) {
			t.Errorf("%v renders %q, which it does not own", vals, key)
		}
	}
	for _, key := range []string{"s:1.2.3x", "s:1:2.3x", "s:1.2", "s:1x", "t:1.2x", "s:1.2xx:", "s:%3a.1x", "s:%41.1x", "s:%3.1x"} {
		if tpl.owns(key) {
			t.Errorf("owns %q", key)
		}
	}
	for _, bad := range []string{"s:{a}{b}", "s:{a}x{b}", "s:{a}%{b}", "100%:{a}"} {
		if _, err := parseKeyTemplate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTruncateRefusedWithoutPrefix(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": "{id}"}, "id")
	id := strings.ReplaceAll(p, ":", "-") + "x" // a value without separators is its own key
	t.Cleanup(func() { rdb.Del(context.Background(), id) })
	err := apply(t, c, upsert(map[string]any{"id": id, "v": "1"}, "id"), sink.Record{Op: sink.OpTruncate})
	assertRejected(t, err, 1)
	if rdb.Exists(context.Background(), id).Val() != 1 {
		t.Error("record before the refused truncate was not applied")
	}
}

func TestWrongTypeIsNotRetryable(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	ctx := context.Background()
	c := open(t, map[string]any{"key": p + "item:{id}", "ttl": "1h"}, "id")
	rdb.RPush(ctx, p+"item:2", "a list")

	err := apply(t, c, upsert(map[string]any{"id": int64(2), "v": "x"}, "id"))
	if err == nil || sink.IsRetryable(err) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("want a non-retryable WRONGTYPE error, got %v", err)
	}

	err = apply(t, c,
		upsert(map[string]any{"id": int64(1), "v": "x"}, "id"),
		upsert(map[string]any{"id": int64(2), "v": "x"}, "id"),
		upsert(map[string]any{"id": int64(3), "v": "x"}, "id"),
	)
	assertRejected(t, err, 1)
	var pe *sink.PartialError
	errors.As(err, &pe)
	if !strings.Contains(pe.Failed[0].Reason, "WRONGTYPE") || !strings.Contains(pe.Failed[0].Reason, p+"item:2") {
		t.Errorf("reason %q should name the error and the key", pe.Failed[0].Reason)
	}
	if n := rdb.Exists(ctx, p+"item:1", p+"item:3").Val(); n != 2 {
		t.Errorf("the good records of the batch were not applied")
	}
}

func TestUnreachableIsRetryable(t *testing.T) {
	for _, mode := range []string{ModeHash, ModeJSON} {
		c := open(t, map[string]any{"url": "redis://127.0.0.1:1/0?max_retries=-1", "key": "k:{id}", "mode": mode}, "id")
		err := apply(t, c, upsert(map[string]any{"id": int64(1)}, "id"))
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("%s upsert: want a retryable error, got %v", mode, err)
		}
		err = apply(t, c, del(map[string]any{"id": int64(1)}))
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("%s delete: want a retryable error, got %v", mode, err)
		}
		err = apply(t, c, sink.Record{Op: sink.OpTruncate})
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("%s truncate: want a retryable error, got %v", mode, err)
		}
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "item:{id}"}, "id")
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err := c.Apply(ctx, &sink.Batch{Records: []sink.Record{upsert(map[string]any{"id": int64(1)}, "id")}})
	if err == nil || !sink.IsRetryable(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
}

func TestErrorClassification(t *testing.T) {
	for msg, want := range map[string]bool{
		"LOADING Redis is loading the dataset in memory":                    true,
		"READONLY You can't write against a read only replica.":             true,
		"CLUSTERDOWN The cluster is down":                                   true,
		"TRYAGAIN Multiple keys request during rehashing of slot":           true,
		"OOM command not allowed when used memory > 'maxmemory'.":           true,
		"NOAUTH Authentication required.":                                   true,
		"ERR max number of clients reached":                                 true,
		"WRONGTYPE Operation against a key holding the wrong kind of value": false,
		"ERR value is not an integer or out of range":                       false,
	} {
		if got := isTransient(fmt.Errorf("wrapped: %w", redisErr(msg))); got != want {
			t.Errorf("isTransient(%q) = %v, want %v", msg, got, want)
		}
	}
	if !isTransient(io.ErrUnexpectedEOF) || !isTransient(context.DeadlineExceeded) || !isTransient(goredis.TxFailedErr) {
		t.Error("connection errors, timeouts and WATCH conflicts must be transient")
	}
}

// redisErr is an error reply from Redis.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

func TestRecordErrors(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "item:{id}"}, "id")
	err := apply(t, c,
		upsert(map[string]any{"id": int64(1), "v": "ok"}, "id"),
		upsert(map[string]any{"id": nil, "v": "null key"}, "id"),
		upsert(map[string]any{"id": int64(3), "v": make(chan int)}, "id"),
	)
	assertRejected(t, err, 1, 2)
	if rdb.Exists(context.Background(), p+"item:1").Val() != 1 {
		t.Error("good record not applied")
	}
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ cmds, pipelines atomic.Int64 }

func (h *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

func TestBatchIsOneRoundTrip(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "item:{id}", "ttl": "1h"}, "id")
	mustApply(t, c, upsert(map[string]any{"id": int64(-1)}, "id")) // connect (HELLO, …) first
	h := &roundTrips{}
	c.client.AddHook(h)
	recs := make([]sink.Record, 1000)
	for i := range recs {
		recs[i] = upsert(map[string]any{"id": int64(i), "v": "x", "gone": nil}, "id")
	}
	mustApply(t, c, recs...)
	// The writes in one MULTI/EXEC, then the offset's script (offsets.go).
	if h.pipelines.Load() != 1 || h.cmds.Load() != 1 {
		t.Errorf("1000 records took %d pipelines and %d single commands, want 1 and 1", h.pipelines.Load(), h.cmds.Load())
	}
	if n := len(rdb.Keys(context.Background(), p+"item:*").Val()); n != 1001 {
		t.Errorf("%d keys written, want 1001", n)
	}
}

func TestJSONBatchRoundTrips(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "item:{id}", "mode": "json"}, "id")
	mustApply(t, c, upsert(map[string]any{"id": int64(-1)}, "id")) // connect (HELLO, …) first
	h := &roundTrips{}
	c.client.AddHook(h)
	recs := make([]sink.Record, 1000)
	for i := range recs {
		recs[i] = upsert(map[string]any{"id": int64(i), "v": "x"}, "id")
	}
	mustApply(t, c, recs...)
	// WATCH, then the pipelined GETs, then MULTI/EXEC; then the offset's script.
	if h.pipelines.Load() != 2 || h.cmds.Load() != 2 {
		t.Errorf("1000 json records took %d pipelines and %d single commands", h.pipelines.Load(), h.cmds.Load())
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(rdb.Get(context.Background(), p+"item:999").Val()), &doc); err != nil || doc["v"] != "x" {
		t.Errorf("item:999 = %v (%v)", doc, err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := func(kv ...any) map[string]any {
		w := map[string]any{"url": "redis://cache.invalid:6379", "key": "stock:{sku}:{warehouse}"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(w, kv[i].(string))
			} else {
				w[kv[i].(string)] = kv[i+1]
			}
		}
		return w
	}
	keys := []string{"sku", "warehouse"}
	cases := []struct {
		name string
		with map[string]any
		key  []string
		want string
	}{
		{"no url", base("url", nil), keys, "with.url: required"},
		{"http url", base("url", "http://h:1"), keys, "with.url: scheme"},
		{"bad url", base("url", "redis://u:s3cr3t@h:x y"), keys, "with.url: not a valid URL"},
		{"no key", base("key", nil), keys, "with.key: required"},
		{"unknown placeholder", base("key", "stock:{sku}:{wh}"), keys, "with.key: placeholder {wh} is not one of the sink's key fields"},
		{"key field unused", base("key", "stock:{sku}"), keys, "with.key: key field warehouse has no {warehouse} placeholder"},
		{"unclosed", base("key", "stock:{sku"), keys, "with.key: \"stock:{sku\" has a '{' without a matching '}'"},
		{"unopened", base("key", "stock:sku}"), keys, "with.key: \"stock:sku}\" has a '}' without"},
		{"empty placeholder", base("key", "stock:{}"), keys, "with.key: \"stock:{}\" has an empty placeholder"},
		{"no placeholder", base("key", "stock"), keys, "with.key: \"stock\" has no placeholder"},
		{"no sink key", base(), nil, "with.key: the sink has no key fields"},
		{"mode", base("mode", "list"), keys, "with.mode: list is not supported"},
		{"ttl text", base("ttl", "soon"), keys, "with.ttl: expected a duration"},
		{"ttl number", base("ttl", 60), keys, "with.ttl: 60 is not a duration"},
		{"ttl zero", base("ttl", "0s"), keys, "with.ttl: 0s is too short"},
		{"db", base("db", "two"), keys, "with.db: two is not an integer"},
		{"db negative", base("db", -1), keys, "with.db: -1 is not"},
		{"unknown", base("tll", "1h"), keys, "with.tll: unknown setting"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), sink.Params{Sink: "s", With: tc.with, Key: tc.key})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestSettingsAccepted(t *testing.T) {
	server, err := url.Parse(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, map[string]any{"url": "redis://:pw@" + server.Host + "/2", "key": "a:{id}", "db": uint64(5), "ttl": "24h", "mode": "json"}, "id")
	if c.cfg.opts.DB != 5 || c.cfg.ttl != 24*time.Hour || c.cfg.mode != ModeJSON || c.cfg.opts.Password != "pw" {
		t.Errorf("config = %+v", c.cfg)
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	c, err := New(context.Background(), sink.Params{Sink: "s", Key: []string{"id"}, Log: zap.New(core),
		With: map[string]any{"url": "redis://user:s3cr3t@127.0.0.1:1?max_retries=-1", "key": "{id}"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Apply(context.Background(), &sink.Batch{Records: []sink.Record{upsert(map[string]any{"id": "1"}, "id")}})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("apply error %v", err)
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(e.Message+f.String, "s3cr3t") {
				t.Errorf("log leaks the password: %s %v", e.Message, e.Context)
			}
		}
	}
}

func TestKeyTemplatePattern(t *testing.T) {
	tpl, err := parseKeyTemplate(`a*b[{x}]?\:{y}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tpl.pattern(), `a\*b\[*\]\?\\:*`; got != want {
		t.Errorf("pattern %q, want %q", got, want)
	}
	if tpl.prefix() != `a*b[` {
		t.Errorf("prefix %q", tpl.prefix())
	}
}

// interferer writes a key from another client right after the connector's first read.
type interferer struct {
	roundTrips
	once  sync.Once
	write func()
}

func (h *interferer) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if cmds[0].Name() == "get" {
			h.once.Do(h.write)
		}
		return err
	}
}

func TestJSONConcurrentWriteIsMerged(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	c := open(t, map[string]any{"key": p + "doc:{id}", "mode": "json"}, "id")
	h := &interferer{write: func() { rdb.Set(context.Background(), p+"doc:1", `{"other":true}`, 0) }}
	c.client.AddHook(h)
	mustApply(t, c, upsert(map[string]any{"id": int64(1), "v": "x"}, "id"))
	if got := rdb.Get(context.Background(), p+"doc:1").Val(); got != `{"id":1,"other":true,"v":"x"}` {
		t.Errorf("after a concurrent write: %s", got)
	}
}

// TestInfinitySpelled: PostgreSQL's infinite dates and timestamps reach the sink as extreme
// instants; both modes store them as PostgreSQL spells them, not as a date in year 5881580.
func TestInfinitySpelled(t *testing.T) {
	rdb := direct(t)
	p := testPrefix(t, rdb)
	until, since := time.UnixMicro(math.MaxInt64), time.Unix(math.MinInt32*24*60*60, 0)
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	fields := map[string]any{"id": int64(1), "until": until, "since": since, "days": []any{since, at}}

	h := open(t, map[string]any{"key": p + "h:{id}"}, "id")
	mustApply(t, h, upsert(fields, "id"))
	assertMap(t, hgetall(t, rdb, p+"h:1"), map[string]string{"id": "1", "until": "infinity", "since": "-infinity",
		"days": `["-infinity","2024-05-01T10:00:00.000000Z"]`})

	j := open(t, map[string]any{"key": p + "j:{id}", "mode": "json"}, "id")
	mustApply(t, j, upsert(fields, "id"))
	want := `{"days":["-infinity","2024-05-01T10:00:00.000000Z"],"id":1,"since":"-infinity","until":"infinity"}`
	if got := rdb.Get(context.Background(), p+"j:1").Val(); got != want {
		t.Errorf("stored JSON\n got %s\nwant %s", got, want)
	}
}
