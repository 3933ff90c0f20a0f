package capture_test

import "testing"

// TestTableDroppedFromPublication: a captured table taken out of the publication (ALTER
// PUBLICATION … DROP TABLE), while capture runs or while it is stopped, has none of its changes
// sent meanwhile. Capture adds it back and refreshes it in full, so the topic ends equal to the
// table, deletes included, and later changes stream as before.
func TestTableDroppedFromPublication(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopped bool
	}{{"while running", false}, {"while stopped", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.items", "public.other")
			e.exec(`CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
				CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 50) g`)
			stop := e.start()
			e.converges("wh.public.items", "public.items")
			if tc.stopped {
				if err := stop(); err != nil {
					t.Fatalf("capture stopped with %v, want nil", err)
				}
			}
			e.exec(`ALTER PUBLICATION backflow DROP TABLE public.items`)
			e.exec(`UPDATE public.items SET v = 'unpublished' WHERE id = 3; DELETE FROM public.items WHERE id = 4;
				INSERT INTO public.items VALUES (60, 'new'); INSERT INTO public.other VALUES (1, 'still captured')`)
			if tc.stopped {
				e.start()
			}
			e.converges("wh.public.other", "public.other")
			e.converges("wh.public.items", "public.items")
			e.exec(`UPDATE public.items SET v = 'later' WHERE id IN (5, 60)`)
			e.converges("wh.public.items", "public.items")
		})
	}
}
