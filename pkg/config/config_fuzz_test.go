package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzExpandEnv checks the environment expansion of a configuration line against a direct
// reading of the syntax: "$$" is "$", "${REF}" (closed on its line) is REF's value, any other
// "${" is an error and all other text is kept. The placeholders that stand for references
// while the YAML is parsed must not change a line, even one that spells a placeholder itself.
func FuzzExpandEnv(f *testing.F) {
	f.Setenv("FUZZ_SET", "value")
	f.Setenv("FUZZ_EMPTY", "")
	f.Setenv("FUZZ_TRICKY", "$${FUZZ_SET} __backflow_env_0__")
	for _, s := range []string{
		"postgres://app:${FUZZ_SET}@db/wh", "${FUZZ_EMPTY:-fallback}", "${FUZZ_UNSET:-}", "cost: $$5",
		"${FUZZ_TRICKY}", "${FUZZ_UNSET}", "${not a name}", "${FUZZ_SET", "$", "$${FUZZ_SET}", "${}",
		"{url: ${FUZZ_SET}, other: ${FUZZ_EMPTY:-x}}", "__backflow_env_0__ ${FUZZ_SET}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\n") || strings.Contains(line, "file:") {
			return // one line; secret files are not the syntax under test
		}
		protected, env := protectEnvRefs([]byte(line))
		got, _, err := env.expand(string(protected))
		want, wantErr := expandDirectly(line)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Fatalf("expanding %q gave %q, %v; want %q, %v", line, got, err, want, wantErr)
		}
	})
}

// expandDirectly expands a line the way the documentation says, without placeholders.
func expandDirectly(s string) (string, error) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("unclosed")
			}
			val, miss, err := lookupRef(s[i+2 : i+2+end])
			if err != nil {
				return "", err
			}
			missing = append(missing, miss...)
			b.WriteString(val)
			i += 3 + end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	if len(missing) > 0 {
		return "", missingVars(missing)
	}
	return b.String(), nil
}

// FuzzRedactURL builds connection URLs around a password and checks that redaction leaves none
// of it, whatever characters it holds (unescaped '@', '/', '?', '#' included: people write them).
func FuzzRedactURL(f *testing.F) {
	f.Add("postgres", "u", "secret", "h/db")
	f.Add("postgresql", "app", "se/cr#et", "db:5432/wh?sslmode=require")
	f.Add("redis", "", "p@ss@word", "h:6379/0")
	f.Add("https", "user", "12#tail", "api.example.com/hook?token=abc")
	f.Add("https", "user", "99?x", "h")
	f.Add("postgres", "u", "%41%42%43", "h/db")
	f.Fuzz(func(t *testing.T, scheme, user, password, hostPath string) {
		if !schemeRe.MatchString(scheme) || strings.ContainsAny(user, ":@/?#") || strings.Contains(hostPath, "@") {
			return // then the '@' and ':' that delimit the password are not the ones written here
		}
		s := scheme + "://" + user + ":" + password + "@" + hostPath
		out := RedactURL(s)
		// The rest of the URL may come out re-encoded (a fragment's NUL as "%00"): what the
		// same URL with another password shows of the secret is not the password's.
		other := RedactURL(scheme + "://" + user + ":zz@" + hostPath)
		for _, secret := range secretForms(password) {
			if strings.Count(s, secret) == 1 && strings.Count(out, secret) > strings.Count(other, secret) {
				t.Fatalf("RedactURL(%q) = %q shows the password %q", s, out, secret)
			}
		}
	})
}

// FuzzRedactDSN checks that redacting a valid key=value DSN leaves nothing of its password.
func FuzzRedactDSN(f *testing.F) {
	f.Add("host=h user=u password=secret dbname=d")
	f.Add("host=h password = 'se cret' dbname=d")
	f.Add(`password='it\'s' sslpassword=other`)
	f.Add("application_name='password=' password=real")
	f.Add("options='-c password=x' password=real")
	f.Fuzz(func(t *testing.T, dsn string) {
		if strings.Contains(dsn, "://") || checkDSN(dsn) != nil {
			return
		}
		out := RedactURL(dsn)
		for _, kv := range dsnPairs(dsn) {
			if kv[0] != "password" && kv[0] != "sslpassword" {
				continue
			}
			for _, secret := range secretForms(kv[1]) {
				if strings.Count(dsn, secret) == 1 && strings.Contains(out, secret) {
					t.Fatalf("RedactURL(%q) = %q shows the %s %q", dsn, out, kv[0], secret)
				}
			}
		}
	})
}

// secretForms is a password as written and percent-decoded, leaving out forms too short or too
// much like the mask to tell apart from other text.
func secretForms(p string) []string {
	forms := []string{p}
	if d, err := url.PathUnescape(p); err == nil && d != p {
		forms = append(forms, d)
	}
	out := forms[:0]
	for _, s := range forms {
		if len(s) >= 3 && !strings.Contains(Mask, s) {
			out = append(out, s)
		}
	}
	return out
}

// dsnPairs reads the keys and values (unquoted, unescaped) of a DSN that checkDSN accepts, as
// libpq does.
func dsnPairs(s string) [][2]string {
	var out [][2]string
	rest := strings.TrimSpace(s)
	for rest != "" {
		key, r, _ := strings.Cut(rest, "=")
		r = strings.TrimLeft(r, " \t\r\n")
		var val strings.Builder
		if strings.HasPrefix(r, "'") {
			i := 1
			for ; i < len(r) && r[i] != '\''; i++ {
				if r[i] == '\\' {
					i++
				}
				if i < len(r) {
					val.WriteByte(r[i])
				}
			}
			r = r[min(i+1, len(r)):]
		} else {
			end := strings.IndexAny(r, " \t\r\n")
			if end < 0 {
				end = len(r)
			}
			val.WriteString(r[:end])
			r = r[end:]
		}
		out = append(out, [2]string{strings.TrimSpace(key), val.String()})
		rest = strings.TrimSpace(r)
	}
	return out
}
