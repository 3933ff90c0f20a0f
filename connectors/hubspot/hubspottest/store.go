package hubspottest

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Object is a stored CRM object.
type Object struct {
	ID         string            // the record id (hs_object_id)
	Properties map[string]string // its properties (cleared ones are absent)
	Changes    int               // upserts that changed a value (creation counts as one)
	created    time.Time
	updated    time.Time
}

// store holds objects by type and record id, with an index of every property value.
type store struct {
	seq     int
	objects map[string]map[string]*Object             // type → id → object
	index   map[string]map[string]map[string]string   // type → property → value → id
	assocs  map[string]map[string]map[string]struct{} // "from/to" → fromID → "toID/typeID"
}

func newStore() *store {
	return &store{objects: map[string]map[string]*Object{}, index: map[string]map[string]map[string]string{},
		assocs: map[string]map[string]map[string]struct{}{}}
}

// normalize stores emails in lower case, as HubSpot does.
func normalize(prop, value string) string {
	if prop == "email" {
		return strings.ToLower(value)
	}
	return value
}

// find returns the object of objectType whose prop has value.
func (st *store) find(objectType, prop, value string) *Object {
	if prop == "" || prop == "hs_object_id" {
		return st.objects[objectType][value]
	}
	id := st.index[objectType][prop][normalize(prop, value)]
	return st.objects[objectType][id]
}

// create makes an empty object of objectType.
func (st *store) create(objectType string, now time.Time) *Object {
	st.seq++
	o := &Object{ID: strconv.Itoa(1000 + st.seq), Properties: map[string]string{}, created: now, updated: now}
	if st.objects[objectType] == nil {
		st.objects[objectType] = map[string]*Object{}
	}
	st.objects[objectType][o.ID] = o
	return o
}

// set writes properties ("" clears one) and reports whether anything changed.
func (st *store) set(objectType string, o *Object, props map[string]string, now time.Time) bool {
	changed := false
	for name, v := range props {
		v = normalize(name, v)
		old, had := o.Properties[name]
		if (v == "" && !had) || (had && old == v) {
			continue
		}
		changed = true
		st.unindex(objectType, name, old, had)
		if v == "" {
			delete(o.Properties, name)
			continue
		}
		o.Properties[name] = v
		st.indexOf(objectType, name)[v] = o.ID
	}
	if changed {
		o.Changes++
		o.updated = now
	}
	return changed
}

// indexOf returns the value index of a property.
func (st *store) indexOf(objectType, prop string) map[string]string {
	if st.index[objectType] == nil {
		st.index[objectType] = map[string]map[string]string{}
	}
	if st.index[objectType][prop] == nil {
		st.index[objectType][prop] = map[string]string{}
	}
	return st.index[objectType][prop]
}

// unindex drops an old value from the index.
func (st *store) unindex(objectType, prop, old string, had bool) {
	if had {
		delete(st.index[objectType][prop], old)
	}
}

// archive removes an object.
func (st *store) archive(objectType, id string) {
	o := st.objects[objectType][id]
	if o == nil {
		return
	}
	for name, v := range o.Properties {
		st.unindex(objectType, name, v, true)
	}
	delete(st.objects[objectType], id)
}

// view is an object as batch read returns it: the listed properties and the defaults.
func (o *Object) view(only []string) map[string]any {
	props := map[string]any{"hs_object_id": o.ID, "createdate": stamp(o.created), "lastmodifieddate": stamp(o.updated)}
	for _, name := range only {
		if v, ok := o.Properties[name]; ok {
			props[name] = v
		}
	}
	return map[string]any{"id": o.ID, "properties": props, "createdAt": stamp(o.created), "updatedAt": stamp(o.updated), "archived": false}
}

// upserted is an object as batch upsert returns it: every property, and whether it is new.
func (o *Object) upserted(isNew bool) map[string]any {
	v := o.view(slices.Collect(maps.Keys(o.Properties)))
	v["new"] = isNew
	return v
}

// stamp formats a time as HubSpot does.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// copyObject returns a copy callers may keep.
func copyObject(o *Object) Object {
	c := *o
	c.Properties = maps.Clone(o.Properties)
	return c
}

// Object returns the object of objectType whose property prop has value.
func (s *Server) Object(objectType, prop, value string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.store.find(objectType, prop, value)
	if o == nil {
		return Object{}, false
	}
	return copyObject(o), true
}

// ObjectCount is how many objects of objectType are stored.
func (s *Server) ObjectCount(objectType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.store.objects[objectType])
}

// Seed stores an object of objectType directly (say, the companies contacts associate to) and
// returns its record id.
func (s *Server) Seed(objectType string, props map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	o := s.store.create(objectType, now)
	s.store.set(objectType, o, props, now)
	return o.ID
}

// Associated lists the record ids of toType associated with fromID of fromType, as "id/typeId".
func (s *Server) Associated(fromType, fromID, toType string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Keys(s.store.assocs[fromType+"/"+toType][fromID]))
	slices.Sort(out)
	return out
}
