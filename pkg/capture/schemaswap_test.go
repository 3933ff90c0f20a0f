package capture_test

import "testing"

// TestSchemaSwap: a blue/green deploy of a warehouse schema builds the next version of every
// table in a schema of its own, then swaps the schemas by renaming them. Every captured name
// then points to another relation, and a FOR TABLES IN SCHEMA publication follows the old
// schema, under its new name. The topics end equal to the tables under the captured names, and
// later changes stream.
func TestSchemaSwap(t *testing.T) {
	for _, tc := range []struct {
		name, entry string
		stopped     bool
	}{
		{"a schema while running", "app.*", false},
		{"a schema while stopped", "app.*", true},
		{"a listed table while running", "app.items", false},
		{"a listed table while stopped", "app.items", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.entry)
			e.exec(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO app.items SELECT g, 'blue' || g FROM generate_series(1, 40) g`)
			stop := e.start()
			e.converges("wh.app.items", "app.items")
			if tc.stopped {
				if err := stop(); err != nil {
					t.Fatalf("capture stopped with %v, want nil", err)
				}
			}
			e.exec(`CREATE SCHEMA app_next; CREATE TABLE app_next.items (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO app_next.items SELECT g, 'green' || g FROM generate_series(10, 60) g`)
			e.exec(`BEGIN; ALTER SCHEMA app RENAME TO app_old; ALTER SCHEMA app_next RENAME TO app; COMMIT`)
			e.exec(`UPDATE app_old.items SET v = 'old' WHERE id = 1`)
			if tc.stopped {
				e.start()
			}
			e.converges("wh.app.items", "app.items")
			e.exec(`UPDATE app.items SET v = 'later' WHERE id IN (10, 60); DELETE FROM app.items WHERE id = 11; INSERT INTO app.items VALUES (70, 'new')`)
			e.converges("wh.app.items", "app.items")
		})
	}
}
