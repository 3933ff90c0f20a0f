package shopifytest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Reasons are the documented reasons an inventory change may give.
var Reasons = []string{
	"correction", "cycle_count_available", "damaged", "movement_canceled", "movement_created",
	"movement_received", "movement_updated", "other", "promotion", "quality_control", "received",
	"reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
	"shrinkage",
}

const maxQuantity = 1_000_000_000

var idempotentRE = regexp.MustCompile(`@idempotent\(\s*key:\s*"((?:[^"\\]|\\.)*)"\s*\)`)

func mutationCost(s *Server, _ *request) float64 { return float64(s.cfg.MutationCost) }

// variantsCost: a connection costs 2 plus its page size times the node's objects (the variant
// and its inventoryItem).
func variantsCost(_ *Server, req *request) float64 {
	first, _ := page(req.Variables)
	return float64(2 + 2*first)
}

func locationsCost(_ *Server, req *request) float64 {
	first, _ := page(req.Variables)
	return float64(2 + first)
}

// productVariants answers a search of the form sku:"A" OR sku:"B" (quoted or bare values).
func (s *Server) productVariants(_ string, req *request) (map[string]any, float64, []any) {
	skus, err := parseSKUSearch(stringVar(req.Variables, "query"))
	if err != nil {
		return nil, 0, []any{gqlError(err.Error(), "BAD_REQUEST")}
	}
	s.counters.VariantQueries++
	var matches []variant
	for _, v := range s.variants {
		if slices.Contains(skus, v.sku) {
			matches = append(matches, v)
		}
	}
	first, offset := page(req.Variables)
	matches = matches[min(offset, len(matches)):]
	n := min(first, len(matches))
	nodes := make([]any, n)
	for i, v := range matches[:n] {
		nodes[i] = map[string]any{"sku": v.sku, "inventoryItem": map[string]any{"id": v.itemID}}
	}
	conn := map[string]any{"nodes": nodes, "pageInfo": pageInfo(offset, n, offset+len(matches))}
	return map[string]any{"productVariants": conn}, float64(2 + 2*n), nil
}

// parseSKUSearch reads `sku:"A" OR sku:B`; anything else is refused so that tests notice.
func parseSKUSearch(q string) ([]string, error) {
	var skus []string
	rest := strings.TrimSpace(q)
	for rest != "" {
		if len(skus) > 0 {
			after, ok := strings.CutPrefix(rest, "OR ")
			if !ok {
				return nil, fmt.Errorf("shopifytest: unsupported search syntax at %q", rest)
			}
			rest = strings.TrimSpace(after)
		}
		sku, tail, err := parseSKUTerm(rest)
		if err != nil {
			return nil, err
		}
		skus = append(skus, sku)
		rest = strings.TrimSpace(tail)
	}
	if len(skus) == 0 {
		return nil, fmt.Errorf("shopifytest: empty search")
	}
	return skus, nil
}

func parseSKUTerm(s string) (sku, rest string, err error) {
	v, ok := strings.CutPrefix(s, "sku:")
	if !ok {
		return "", "", fmt.Errorf("shopifytest: unsupported search term at %q", s)
	}
	if !strings.HasPrefix(v, `"`) {
		sku, rest, _ = strings.Cut(v, " ")
		return sku, rest, nil
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '"':
			return b.String(), v[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("shopifytest: unterminated quote in %q", s)
}

func (s *Server) locationsQuery(_ string, req *request) (map[string]any, float64, []any) {
	s.counters.LocationQueries++
	first, offset := page(req.Variables)
	locs := s.locations[min(offset, len(s.locations)):]
	n := min(first, len(locs))
	nodes := make([]any, n)
	for i, l := range locs[:n] {
		nodes[i] = map[string]any{"id": l.id, "name": l.name}
	}
	conn := map[string]any{"nodes": nodes, "pageInfo": pageInfo(offset, n, len(s.locations))}
	return map[string]any{"locations": conn}, float64(2 + n), nil
}

// setQuantities is inventorySetQuantities: validated, idempotent, all-or-nothing.
func (s *Server) setQuantities(version string, req *request) (map[string]any, float64, []any) {
	cost := float64(s.cfg.MutationCost)
	key := ""
	if m := idempotentRE.FindStringSubmatch(req.Query); m != nil {
		key = m[1]
	}
	input, _ := req.Variables["input"].(map[string]any)
	s.mutations = append(s.mutations, Mutation{Query: req.Query, IdempotencyKey: key, Input: input})
	if errs := validateInput(version, key, input); errs != nil {
		return nil, 0, errs
	}
	params, _ := json.Marshal(input) // map keys are sorted: a canonical form
	if st, ok := s.idem[key]; ok && key != "" {
		if st.params != string(params) {
			return payload(nil, []any{userError("IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
				"The same idempotency key cannot be used with different operation parameters.", nil)}), cost, nil
		}
		s.counters.Replays++
		return st.data, cost, nil
	}
	data := s.execute(input)
	if key != "" {
		s.idem[key] = stored{params: string(params), data: data}
	}
	return data, cost, nil
}

// validateInput returns the top-level errors Shopify gives before executing.
func validateInput(version, key string, input map[string]any) []any {
	if version >= "2026-04" && key == "" {
		return []any{gqlError("The @idempotent directive is required for this mutation but was not provided.", "BAD_REQUEST")}
	}
	if input == nil {
		return []any{gqlError("Variable $input of type InventorySetQuantitiesInput! was provided invalid value", "INVALID_VARIABLE")}
	}
	if _, ok := input["ignoreCompareQuantity"]; ok && version >= "2026-10" {
		return []any{gqlError("Variable $input of type InventorySetQuantitiesInput! was provided invalid value for ignoreCompareQuantity (Field is not defined on InventorySetQuantitiesInput)", "INVALID_VARIABLE")}
	}
	qs, ok := input["quantities"].([]any)
	if !ok {
		return []any{gqlError("Variable $input of type InventorySetQuantitiesInput! was provided invalid value for quantities (Expected value to not be null)", "INVALID_VARIABLE")}
	}
	if len(qs) > MaxQuantities {
		e := gqlError(fmt.Sprintf("The input array size of %d is greater than the maximum allowed of %d.", len(qs), MaxQuantities), "MAX_INPUT_SIZE_EXCEEDED")
		e["path"] = []any{"inventorySetQuantities", "input", "quantities"}
		return []any{e}
	}
	for _, q := range qs {
		m, _ := q.(map[string]any)
		if _, ok := m["changeFromQuantity"]; !ok && version >= "2026-04" {
			return []any{gqlError("InventoryQuantityInput must include the following argument: changeFromQuantity.", "INVALID_FIELD_ARGUMENTS")}
		}
	}
	return nil
}

// execute checks every quantity and applies them all, or none when any is in error.
func (s *Server) execute(input map[string]any) map[string]any {
	s.counters.Mutations++
	name := stringVar(input, "name")
	errs := s.checkInput(input)
	qs := input["quantities"].([]any)
	for i, q := range qs {
		errs = append(errs, s.checkQuantity(name, i, q.(map[string]any), qs[:i])...)
	}
	if len(errs) > 0 {
		s.counters.UserErrors += len(errs)
		return payload(nil, errs)
	}
	for _, q := range qs {
		m := q.(map[string]any)
		n, _ := toInt(m["quantity"])
		setLevel(s.level(stringVar(m, "inventoryItemId"), stringVar(m, "locationId")), name, n)
	}
	s.counters.Applied += len(qs)
	return payload(map[string]any{"id": s.gid("InventoryAdjustmentGroup"), "reason": stringVar(input, "reason")}, []any{})
}

func (s *Server) checkInput(input map[string]any) []any {
	var errs []any
	if name := stringVar(input, "name"); name != "available" && name != "on_hand" {
		errs = append(errs, userError("INVALID_NAME", "The quantity name must be either 'available' or 'on_hand'.", []string{"input", "name"}))
	}
	if !slices.Contains(Reasons, stringVar(input, "reason")) {
		errs = append(errs, userError("INVALID_REASON", "The specified reason is invalid.", []string{"input", "reason"}))
	}
	return errs
}

// checkQuantity returns the userErrors of quantity i; before are the quantities ahead of it.
func (s *Server) checkQuantity(name string, i int, q map[string]any, before []any) []any {
	itemID, locID := stringVar(q, "inventoryItemId"), stringVar(q, "locationId")
	path := func(f string) []string { return []string{"input", "quantities", strconv.Itoa(i), f} }
	it := s.items[itemID]
	switch {
	case it == nil:
		return []any{userError("INVALID_INVENTORY_ITEM", "The specified inventory item could not be found.", path("inventoryItemId"))}
	case !slices.ContainsFunc(s.locations, func(l location) bool { return l.id == locID }):
		return []any{userError("INVALID_LOCATION", "The specified location could not be found.", path("locationId"))}
	case it.levels[locID] == nil:
		return []any{userError("ITEM_NOT_STOCKED_AT_LOCATION", "The specified inventory item is not stocked at the location.", path("locationId"))}
	case it.nonMutable:
		return []any{userError("NON_MUTABLE_INVENTORY_ITEM", "The specified inventory item is not allowed to be adjusted via API. Example: if the inventory item is a parent bundle.", path("inventoryItemId"))}
	case duplicatePair(itemID, locID, before):
		return []any{userError("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", "The combination of inventoryItemId and locationId must be unique.", path("inventoryItemId"))}
	}
	return checkValue(name, q, it.levels[locID], path)
}

func checkValue(name string, q map[string]any, level map[string]int, path func(string) []string) []any {
	n, ok := toInt(q["quantity"])
	switch {
	case !ok || n > maxQuantity:
		return []any{userError("INVALID_QUANTITY_TOO_HIGH", "The total quantity can't be higher than 1,000,000,000.", path("quantity"))}
	case n < -maxQuantity:
		return []any{userError("INVALID_QUANTITY_TOO_LOW", "The total quantity can't be lower than -1,000,000,000.", path("quantity"))}
	case n < 0 && name == "on_hand":
		return []any{userError("INVALID_QUANTITY_NEGATIVE", "The quantity can't be negative.", path("quantity"))}
	}
	if from, set := q["changeFromQuantity"]; set && from != nil {
		if f, _ := toInt(from); f != level[name] {
			return []any{userError("CHANGE_FROM_QUANTITY_STALE", "The changeFromQuantity value does not match persisted value.", path("changeFromQuantity"))}
		}
	}
	return nil
}

func duplicatePair(itemID, locID string, before []any) bool {
	return slices.ContainsFunc(before, func(q any) bool {
		m := q.(map[string]any)
		return stringVar(m, "inventoryItemId") == itemID && stringVar(m, "locationId") == locID
	})
}

// setLevel sets one named quantity; available and on_hand move together (nothing committed).
func setLevel(level map[string]int, name string, q int) {
	delta := q - level[name]
	level["available"] += delta
	level["on_hand"] += delta
}

func payload(group map[string]any, userErrors []any) map[string]any {
	var g any
	if group != nil {
		g = group
	}
	return map[string]any{"inventorySetQuantities": map[string]any{"inventoryAdjustmentGroup": g, "userErrors": userErrors}}
}

func userError(code, msg string, field []string) map[string]any {
	var f any
	if field != nil {
		f = field
	}
	return map[string]any{"code": code, "field": f, "message": msg}
}
