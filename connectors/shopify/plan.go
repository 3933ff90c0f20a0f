package shopify

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// maxQuantity is the largest quantity Shopify accepts (and minus it the smallest).
const maxQuantity = 1_000_000_000

// level is what one record asks: set an inventory level (a SKU at a warehouse) to a quantity.
type level struct {
	index     int // in Batch.Records
	sku       string
	warehouse string
	key       string // levelKey(sku, warehouse)
	quantity  int
	from      *int // changeFromQuantity; nil opts out of the compare-and-swap check
	pos       position
	ident     string // the change's identity in idempotency keys

	itemID    string // resolved inventory item GID
	locID     string // resolved location GID
	refreshed bool   // lookups were refreshed once after a userError
	lastError string // the userError that caused the refresh
}

// plan turns a batch into levels to set. Records that cannot be turned into one fail; records
// already applied (duplicates of applied changes) and records whose level a later record of
// the batch sets again are left out, as applied.
func (c *connector) plan(b *sink.Batch) ([]*level, []sink.RecordError) {
	var failed []sink.RecordError
	byKey := map[string]int{} // level key → position in levels
	var levels []*level
	for i := range b.Records {
		lv, err := c.levelOf(&b.Records[i])
		if err != nil {
			failed = append(failed, sink.RecordError{Index: i, Reason: err.Error()})
			continue
		}
		lv.index = i
		if c.seen.duplicate(lv) {
			continue
		}
		if j, ok := byKey[lv.key]; ok {
			levels[j] = lv // the later state of the level wins
			continue
		}
		byKey[lv.key] = len(levels)
		levels = append(levels, lv)
	}
	return levels, failed
}

// levelOf reads one record: upserts set the quantity field, deletes set 0, truncates are refused.
func (c *connector) levelOf(r *sink.Record) (*level, error) {
	if r.Op == sink.OpTruncate {
		return nil, errors.New("shopify: truncate is not supported: inventory levels are set one by one and a truncate names none; set the levels to 0 by deletes or upserts instead")
	}
	sku, err := c.textField(r, c.cfg.skuField, "sku_field")
	if err != nil {
		return nil, err
	}
	wh, err := c.textField(r, c.cfg.locField, "location_field")
	if err != nil {
		return nil, err
	}
	lv := &level{sku: sku, warehouse: wh, key: levelKey(sku, wh), pos: recordPosition(r)}
	lv.ident = changeIdentity(r, lv.pos)
	if r.Op == sink.OpDelete {
		return lv, nil // quantity 0, no compare check
	}
	if lv.quantity, err = c.quantityField(r, c.cfg.qtyField, "quantity_field"); err != nil {
		return nil, err
	}
	if !c.cfg.ignoreCompare {
		lv.from, err = c.compareValue(r)
	}
	return lv, err
}

// textField reads a SKU or warehouse from the record's key or fields.
func (c *connector) textField(r *sink.Record, field, setting string) (string, error) {
	v, ok := r.Key[field]
	if !ok {
		v, ok = r.Fields[field]
	}
	if !ok || v == nil {
		return "", fmt.Errorf("shopify: the record has no %q (with.%s)%s", field, setting, deleteHint(r))
	}
	s, err := text(v)
	if err != nil {
		return "", fmt.Errorf("shopify: %q (with.%s): %w", field, setting, err)
	}
	return s, nil
}

func deleteHint(r *sink.Record) string {
	if r.Op == sink.OpDelete {
		return "; deletes carry only the sink's key, so it must include the SKU and warehouse fields"
	}
	return ""
}

// text accepts strings and integers (SKUs and warehouse codes stored as numbers).
func text(v any) (string, error) {
	switch t := v.(type) {
	case string:
		if strings.TrimSpace(t) == "" {
			return "", errors.New("empty")
		}
		return t, nil
	case []byte:
		return text(string(t))
	case int:
		return strconv.Itoa(t), nil
	case int32:
		return strconv.FormatInt(int64(t), 10), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	}
	return "", fmt.Errorf("expected text or an integer, got %T", v)
}

func (c *connector) quantityField(r *sink.Record, field, setting string) (int, error) {
	v, ok := r.Fields[field]
	if !ok || v == nil {
		return 0, fmt.Errorf("shopify: the record has no quantity %q (with.%s)", field, setting)
	}
	q, err := quantity(v)
	if err != nil {
		return 0, fmt.Errorf("shopify: quantity %q (with.%s): %w", field, setting, err)
	}
	return q, nil
}

// compareValue reads with.compare_field; null (an insert has no previous quantity) opts out.
func (c *connector) compareValue(r *sink.Record) (*int, error) {
	v, ok := r.Fields[c.cfg.compareField]
	if !ok || v == nil {
		return nil, nil
	}
	q, err := quantity(v)
	if err != nil {
		return nil, fmt.Errorf("shopify: compare quantity %q (with.compare_field): %w", c.cfg.compareField, err)
	}
	return &q, nil
}

// quantity accepts integers, integral floats and integral decimal text within Shopify's range.
func quantity(v any) (int, error) {
	var f float64
	switch t := v.(type) {
	case int:
		f = float64(t)
	case int32:
		f = float64(t)
	case int64:
		f = float64(t)
	case float32:
		f = float64(t)
	case float64:
		f = t
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(t), 64); err != nil {
			return 0, fmt.Errorf("%q is not a number", t)
		}
	default:
		return 0, fmt.Errorf("expected an integer, got %T", v)
	}
	switch {
	case math.IsNaN(f) || f != math.Trunc(f):
		return 0, fmt.Errorf("%v is not a whole number", v)
	case math.Abs(f) > maxQuantity:
		return 0, fmt.Errorf("%v is outside Shopify's range of ±1,000,000,000", v)
	}
	return int(f), nil
}
