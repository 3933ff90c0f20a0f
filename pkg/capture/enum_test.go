package capture_test

import "testing"

// TestEnumLabelRenamed: ALTER TYPE … RENAME VALUE changes how every row holding the label reads,
// and PostgreSQL logs no row change for it. Capture re-snapshots the tables whose columns hold
// the type, while it runs or at its next start, so the topic ends equal to the table.
func TestEnumLabelRenamed(t *testing.T) {
	e := newEnv(t, "public.items")
	e.exec(`CREATE TYPE public.mood AS ENUM ('sad', 'ok');
		CREATE TABLE public.items (id int PRIMARY KEY, v public.mood NOT NULL);
		INSERT INTO public.items SELECT g, CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'ok' END::public.mood FROM generate_series(1, 40) g`)
	stop := e.start()
	e.converges("wh.public.items", "public.items")

	e.exec(`ALTER TYPE public.mood RENAME VALUE 'sad' TO 'unhappy'`)
	e.converges("wh.public.items", "public.items")

	if err := stop(); err != nil {
		t.Fatalf("capture stopped with %v, want nil", err)
	}
	e.exec(`ALTER TYPE public.mood ADD VALUE 'glad'`)
	e.exec(`ALTER TYPE public.mood RENAME VALUE 'ok' TO 'fine'; UPDATE public.items SET v = 'glad' WHERE id = 1`)
	e.start()
	e.converges("wh.public.items", "public.items")
}
