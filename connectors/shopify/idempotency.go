package shopify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
	"sync"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// memoryCap bounds the levels the applied memory holds per generation.
const memoryCap = 1 << 19

// position is where a change sits in the source: its transaction's commit LSN and id. Changes
// of one inventory level commit in LSN order, so a change at or behind the last applied position
// of its level is a duplicate (a capture restart re-sends from the confirmed position).
type position struct {
	valid bool
	lsn   int64
	txID  int64
}

// changeIdentity names a record's change in idempotency keys: its source position when it has
// one (the same change re-captured lands at another Kafka offset but keeps it), its Kafka
// coordinates otherwise.
func changeIdentity(r *sink.Record, pos position) string {
	if pos.valid {
		return "lsn:" + strconv.FormatInt(pos.lsn, 10) + "/" + strconv.FormatInt(pos.txID, 10)
	}
	return "kafka:" + r.Topic + "/" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

func recordPosition(r *sink.Record) position {
	if r.Event == nil || r.Event.Source.LSN == 0 {
		return position{}
	}
	return position{valid: true, lsn: r.Event.Source.LSN, txID: r.Event.Source.TxID}
}

// idempotencyKey derives the @idempotent key of one inventorySetQuantities call from what the
// call does: the sink, the quantity name and reason, and for every quantity the change it comes
// from and the exact values sent. The same changes sent again (a retried batch, the same batch
// read again after a sink restart, the same transaction re-captured) give the same key and are
// applied once; any difference in the variables gives another key, so Shopify never sees one
// key with two sets of parameters. The key has the form of a UUID (version 8, RFC 9562).
func idempotencyKey(sinkName, name, reason string, levels []*level) string {
	h := sha256.New()
	writeField(h, "backflow/shopify/v1")
	writeField(h, sinkName)
	writeField(h, name)
	writeField(h, reason)
	for _, lv := range levels {
		writeField(h, lv.ident)
		writeField(h, lv.itemID)
		writeField(h, lv.locID)
		writeField(h, strconv.Itoa(lv.quantity))
		from := "null"
		if lv.from != nil {
			from = strconv.Itoa(*lv.from)
		}
		writeField(h, from)
	}
	return uuid8(h.Sum(nil))
}

// writeField writes s length-prefixed, so that no two field lists hash alike.
func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// uuid8 formats the first 16 bytes of sum as a version 8, variant 10 UUID.
func uuid8(sum []byte) string {
	var u [16]byte
	copy(u[:], sum)
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	s := hex.EncodeToString(u[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// applied is the last change applied to a level, and the quantity it set.
type applied struct {
	pos      position
	quantity int
}

// memory remembers, per inventory level (SKU at warehouse), the last change this process
// applied, so that a duplicate arriving in another batch (where its idempotency key differs,
// the other quantities of the call being others) is not applied again. It holds two
// generations of at most memoryCap levels each: the least recently applied are forgotten first.
type memory struct {
	mu       sync.Mutex
	cur, old map[string]applied
}

func newMemory() *memory {
	return &memory{cur: map[string]applied{}, old: map[string]applied{}}
}

func levelKey(sku, warehouse string) string { return sku + "\x00" + warehouse }

// duplicate reports whether lv's change was already applied: it is behind the last applied
// change of its level, or it is that change (same position and quantity).
func (m *memory) duplicate(lv *level) bool {
	if !lv.pos.valid {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.cur[lv.key]
	if !ok {
		last, ok = m.old[lv.key]
	}
	if !ok || !last.pos.valid {
		return false
	}
	if lv.pos.lsn != last.pos.lsn {
		return lv.pos.lsn < last.pos.lsn
	}
	return lv.pos.txID == last.pos.txID && lv.quantity == last.quantity
}

// remember records levels as applied.
func (m *memory) remember(levels []*level) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, lv := range levels {
		if !lv.pos.valid {
			continue
		}
		if len(m.cur) >= memoryCap {
			m.old, m.cur = m.cur, make(map[string]applied, memoryCap/4)
		}
		m.cur[lv.key] = applied{pos: lv.pos, quantity: lv.quantity}
	}
}
