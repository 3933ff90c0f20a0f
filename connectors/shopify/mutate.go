package shopify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// MaxQuantities is the most quantities one inventorySetQuantities call carries.
const MaxQuantities = 250

// mutationCost is the requested cost of one inventorySetQuantities until Shopify has said it.
const mutationCost = 10

// setMutation is inventorySetQuantities; %s is the idempotency key, quoted.
const setMutation = `mutation BackflowSetQuantities($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) @idempotent(key: %s) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}`

// refreshable are the userError codes after which the lookups of the item are refreshed once.
var refreshable = []string{"INVALID_INVENTORY_ITEM", "INVALID_LOCATION", "ITEM_NOT_STOCKED_AT_LOCATION"}

type setInput struct {
	Name       string          `json:"name"`
	Reason     string          `json:"reason"`
	Quantities []quantityInput `json:"quantities"`
}

type quantityInput struct {
	InventoryItemID    string `json:"inventoryItemId"`
	LocationID         string `json:"locationId"`
	Quantity           int    `json:"quantity"`
	ChangeFromQuantity *int   `json:"changeFromQuantity"` // always sent: null opts out
}

type setPayload struct {
	InventorySetQuantities *struct {
		InventoryAdjustmentGroup *struct {
			ID string `json:"id"`
		} `json:"inventoryAdjustmentGroup"`
		UserErrors []userError `json:"userErrors"`
	} `json:"inventorySetQuantities"`
}

// userError is an InventorySetQuantitiesUserError.
type userError struct {
	Code    string   `json:"code"`
	Field   []string `json:"field"`
	Message string   `json:"message"`
}

func (e userError) String() string { return e.Code + ": " + e.Message }

// setChunk sets at most MaxQuantities levels. Shopify applies a call with userErrors not at all
// (or, should it ever apply the valid part, setting absolute quantities again is harmless), so
// after userErrors the levels they name are rejected, or looked up again once, and the others
// are sent again in a new call, until a call goes through without userErrors.
func (c *connector) setChunk(ctx context.Context, chunk []*level) ([]sink.RecordError, error) {
	var failed []sink.RecordError
	for pending := chunk; len(pending) > 0; {
		errs, err := c.setQuantities(ctx, pending)
		if err != nil {
			return nil, err
		}
		if len(errs) == 0 {
			c.seen.remember(pending)
			return failed, nil
		}
		next, rejected, err := c.triage(ctx, pending, errs)
		if err != nil {
			return nil, err
		}
		failed = append(failed, rejected...)
		pending = next
	}
	return failed, nil
}

// setQuantities sends one inventorySetQuantities call and returns its userErrors.
func (c *connector) setQuantities(ctx context.Context, levels []*level) ([]userError, error) {
	in := setInput{Name: c.cfg.name, Reason: c.cfg.reason, Quantities: make([]quantityInput, len(levels))}
	for i, lv := range levels {
		in.Quantities[i] = quantityInput{InventoryItemID: lv.itemID, LocationID: lv.locID, Quantity: lv.quantity, ChangeFromQuantity: lv.from}
	}
	key := idempotencyKey(c.sink, c.cfg.name, c.cfg.reason, levels)
	req := &gqlRequest{op: "inventorySetQuantities", costKey: "inventorySetQuantities", estimate: mutationCost,
		Query: fmt.Sprintf(setMutation, strconv.Quote(key)), Vars: map[string]any{"input": in}}
	var out setPayload
	if err := c.gql.do(ctx, req, &out); err != nil {
		return nil, err
	}
	if out.InventorySetQuantities == nil {
		return nil, sink.Retryable(errors.New("shopify: inventorySetQuantities: answer without a payload"))
	}
	return out.InventorySetQuantities.UserErrors, nil
}

// triage sorts a call's levels after userErrors: those without an error go again, those whose
// error may come from a stale lookup are looked up again once, the others are rejected. An error
// that names no quantity fails the call as a whole.
func (c *connector) triage(ctx context.Context, pending []*level, errs []userError) ([]*level, []sink.RecordError, error) {
	byIndex := map[int][]userError{}
	for _, e := range errs {
		i, ok := quantityIndex(e.Field, len(pending))
		if !ok {
			return nil, nil, unattributed(e)
		}
		byIndex[i] = append(byIndex[i], e)
	}
	var next, refresh []*level
	var rejected []sink.RecordError
	for i, lv := range pending {
		es, bad := byIndex[i]
		switch {
		case !bad:
			next = append(next, lv)
		case !lv.refreshed && slices.Contains(refreshable, es[0].Code):
			lv.refreshed, lv.lastError = true, reason(lv, es)
			c.cat.forget(lv, es[0].Code)
			refresh = append(refresh, lv)
		default:
			rejected = append(rejected, sink.RecordError{Index: lv.index, Reason: reason(lv, es)})
		}
	}
	again, failed, err := c.relookup(ctx, refresh)
	return append(next, again...), append(rejected, failed...), err
}

// relookup resolves levels again after a stale-lookup error; those whose ids did not change are
// rejected with that error.
func (c *connector) relookup(ctx context.Context, levels []*level) ([]*level, []sink.RecordError, error) {
	if len(levels) == 0 {
		return nil, nil, nil
	}
	old := make(map[*level][2]string, len(levels))
	for _, lv := range levels {
		old[lv] = [2]string{lv.itemID, lv.locID}
	}
	resolved, failed, err := c.cat.resolve(ctx, levels)
	if err != nil {
		return nil, nil, err
	}
	var again []*level
	for _, lv := range resolved {
		if old[lv] == [2]string{lv.itemID, lv.locID} {
			failed = append(failed, sink.RecordError{Index: lv.index, Reason: lv.lastError})
			continue
		}
		c.log.Info("inventory lookup refreshed after a stale-id error",
			zap.String("sku", lv.sku), zap.String("warehouse", lv.warehouse))
		again = append(again, lv)
	}
	return again, failed, nil
}

// quantityIndex finds i in a field path such as ["input", "quantities", "3", "locationId"].
func quantityIndex(field []string, n int) (int, bool) {
	for j := 0; j+1 < len(field); j++ {
		if field[j] == "quantities" {
			i, err := strconv.Atoi(field[j+1])
			return i, err == nil && i >= 0 && i < n
		}
	}
	return 0, false
}

// unattributed is the error for a userError about the call rather than one quantity.
func unattributed(e userError) error {
	err := fmt.Errorf("shopify: inventorySetQuantities: %s (field %s)", e, strings.Join(e.Field, "."))
	if e.Code == "IDEMPOTENCY_CONCURRENT_REQUEST" {
		return sink.Retryable(err)
	}
	return err
}

// reason is the dead-letter reason of a rejected level: Shopify's codes and messages.
func reason(lv *level, es []userError) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return fmt.Sprintf("%s (sku %q at warehouse %q)", strings.Join(parts, "; "), lv.sku, lv.warehouse)
}
