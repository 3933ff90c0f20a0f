package codec

import (
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/backflow-dev/backflow/pkg/change"
)

const testPrefix = "wh"

// everyKind is a table with a column of every kind, a composite key and a name to sanitise.
func everyKind() *change.Table {
	return &change.Table{Schema: "public", Name: "every_kind", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt64, PGType: "int8", TypeOID: 20, Key: true},
		{Name: "region", Kind: change.KindString, PGType: "text", TypeOID: 25, Key: true},
		{Name: "small", Kind: change.KindInt16, PGType: "int2", TypeOID: 21},
		{Name: "i4", Kind: change.KindInt32, PGType: "int4", TypeOID: 23},
		{Name: "f4", Kind: change.KindFloat32, PGType: "float4", TypeOID: 700},
		{Name: "f8", Kind: change.KindFloat64, PGType: "float8", TypeOID: 701},
		{Name: "num", Kind: change.KindNumeric, PGType: "numeric", TypeOID: 1700},
		{Name: "flag", Kind: change.KindBool, PGType: "bool", TypeOID: 16},
		{Name: "txt", Kind: change.KindString, PGType: "text", TypeOID: 25},
		{Name: "mood", Kind: change.KindEnum, PGType: "mood", TypeOID: 16385},
		{Name: "data", Kind: change.KindBytes, PGType: "bytea", TypeOID: 17},
		{Name: "d", Kind: change.KindDate, PGType: "date", TypeOID: 1082},
		{Name: "t", Kind: change.KindTime, PGType: "time", TypeOID: 1083},
		{Name: "ts", Kind: change.KindTimestamp, PGType: "timestamp", TypeOID: 1114},
		{Name: "tstz", Kind: change.KindTimestampTZ, PGType: "timestamptz", TypeOID: 1184},
		{Name: "iv", Kind: change.KindInterval, PGType: "interval", TypeOID: 1186},
		{Name: "u", Kind: change.KindUUID, PGType: "uuid", TypeOID: 2950},
		{Name: "j", Kind: change.KindJSON, PGType: "jsonb", TypeOID: 3802},
		{Name: "tags", Kind: change.KindArray, Elem: change.KindString, PGType: "_text", TypeOID: 1009},
		{Name: "nums", Kind: change.KindArray, Elem: change.KindInt32, PGType: "_int4", TypeOID: 1007},
		{Name: "stamps", Kind: change.KindArray, Elem: change.KindTimestampTZ, PGType: "_timestamptz", TypeOID: 1185},
		{Name: "Weird Name!", Kind: change.KindString, PGType: "varchar", TypeOID: 1043},
	}}
}

// fullRow has a non-NULL value in every column.
func fullRow() change.Row {
	return change.Row{
		"id": int64(42), "region": "eu", "small": int32(-7), "i4": int32(123456),
		"f4": float32(1.5), "f8": float64(-2.25), "num": "12.340", "flag": true,
		"txt": "héllo \"world\"\n\t<&>", "mood": "happy", "data": []byte{0, 1, 2, 255},
		"d": int32(19844), "t": int64(36000000001), "ts": int64(1714557600000001),
		"tstz": "2024-05-01T10:00:00.000001Z", "iv": "P1Y2M3DT4H5M6.5S",
		"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": `{"a": [1, 2], "b": null}`,
		"tags": []any{"x", nil, "z"}, "nums": []any{int32(1), nil, int32(-3)},
		"stamps": []any{}, "Weird Name!": "w",
	}
}

// nullRow has the key columns of fullRow and NULL everywhere else.
func nullRow(t *change.Table) change.Row {
	r := make(change.Row, len(t.Columns))
	full := fullRow()
	for _, c := range t.Columns {
		r[c.Name] = nil
		if c.Key {
			r[c.Name] = full[c.Name]
		}
	}
	return r
}

func testSource(snapshot string) change.Source {
	return change.Source{
		Connector: "postgresql", Name: testPrefix, DB: "warehouse", Schema: "public", Table: "every_kind",
		TxID: 7781, LSN: 24023128, TsMs: 1714557600123, Snapshot: snapshot,
	}
}

// testEvents covers every op, NULLs, arrays with NULL elements and unchanged TOAST.
func testEvents(t *change.Table) map[string]*change.Event {
	upd := fullRow()
	upd["txt"] = nil
	upd["i4"] = int32(-1)
	readSrc := testSource("true")
	readSrc.TxID, readSrc.LSN = 0, 0
	return map[string]*change.Event{
		"read":         {Op: change.OpRead, Table: t, After: fullRow(), Source: readSrc, TsMs: 1714557600999},
		"insert":       {Op: change.OpCreate, Table: t, After: fullRow(), Source: testSource("false"), TsMs: 1714557600999},
		"insert nulls": {Op: change.OpCreate, Table: t, After: nullRow(t), Source: testSource("false"), TsMs: 1},
		"update toast": {Op: change.OpUpdate, Table: t, Before: nullRow(t), After: upd,
			UnchangedToast: []string{"txt"}, Source: testSource("false"), TsMs: 1714557601000},
		"delete":   {Op: change.OpDelete, Table: t, Before: nullRow(t), Source: testSource("last"), TsMs: 2},
		"truncate": {Op: change.OpTruncate, Table: t, Source: testSource("false"), TsMs: 3},
	}
}

// publisherLog records SchemaPublisher calls and feeds a SchemaStore.
type publisherLog struct {
	mu    sync.Mutex
	calls map[uint64]int
	store *SchemaStore
	fail  error
}

func newPublisherLog() *publisherLog {
	return &publisherLog{calls: map[uint64]int{}, store: NewSchemaStore()}
}

func (p *publisherLog) publish(_ context.Context, fp uint64, schema []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	p.calls[fp]++
	got, err := p.store.AddRecord(FingerprintKey(fp), schema)
	if err != nil {
		return err
	}
	if got != fp {
		panic("fingerprint mismatch")
	}
	return nil
}

func (p *publisherLog) count(fp uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[fp]
}

// codecPair is an encoder and a decoder that can read what it writes.
type codecPair struct {
	enc *Encoder
	dec *Decoder
	pub *publisherLog
	reg *srfake.Registry
}

func newPair(t testing.TB, encoding string) *codecPair {
	t.Helper()
	p := &codecPair{}
	var err error
	switch encoding {
	case "avro":
		p.pub = newPublisherLog()
		p.enc, err = NewEncoder(TopicPrefix(testPrefix), SchemaPublisher(p.pub.publish))
		if err == nil {
			p.dec, err = NewDecoder(Schemas(p.pub.store))
		}
	case "avro+registry":
		p.reg = srfake.New()
		t.Cleanup(p.reg.Close)
		var cl *sr.Client
		cl, err = sr.NewClient(sr.URLs(p.reg.URL()))
		if err == nil {
			p.enc, err = NewEncoder(TopicPrefix(testPrefix), Registry(cl))
		}
		if err == nil {
			var cl2 *sr.Client // a separate client: nothing shared with the encoder but the registry
			if cl2, err = sr.NewClient(sr.URLs(p.reg.URL())); err == nil {
				p.dec, err = NewDecoder(DecoderRegistry(cl2))
			}
		}
	case "json":
		p.enc, err = NewEncoder(TopicPrefix(testPrefix), Format(FormatJSON))
		if err == nil {
			p.dec, err = NewDecoder()
		}
	default:
		t.Fatalf("unknown encoding %q", encoding)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}
