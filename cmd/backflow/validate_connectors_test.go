package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateConnectorSettings: for every connector, `backflow validate` reports every mistake
// of a sink's with block at once, each at its file:line with its YAML path: an unknown setting
// (with the name it likely misspells), a value of the wrong type, a missing required setting
// (at the with block's line), a value not among the allowed ones, and the connector's own checks.
// Nothing is connected to: no server runs at the addresses given.
func TestValidateConnectorSettings(t *testing.T) {
	// The sink's with block starts on line 8; a missing setting is reported at line 7.
	const head = "kafka: {brokers: [127.0.0.1:1]}\nsinks:\n  - name: s\n    topics: [t]\n    connector: %s\n    key: [id]\n    with:\n"
	cases := []struct {
		connector string
		with      string   // lines 8…
		want      []string // "line: path: message fragment"
	}{
		{"postgres", "      tabel: stock\n      max_conns: lots\n      auto_create: maybe\n      offsets_table: a.b.c\n", []string{
			"7: sinks[0].with.url: required",
			"7: sinks[0].with.table: required",
			"8: sinks[0].with.tabel: unknown setting; did you mean table?",
			"9: sinks[0].with.max_conns: lots is not an integer",
			"10: sinks[0].with.auto_create: expected true or false",
			"11: sinks[0].with.offsets_table: ",
		}},
		{"mysql", "      dsn: \"root@tcp(127.0.0.1:1)/test\"\n      tabel: x\n      max_conns: lots\n      tls: maybe\n", []string{
			"7: sinks[0].with.table: required",
			"9: sinks[0].with.tabel: unknown setting; did you mean table?",
			"10: sinks[0].with.max_conns: lots is not an integer",
			"11: sinks[0].with.tls: maybe is not supported; expected one of true, false, skip-verify, preferred",
		}},
		{"redis", "      url: redis://127.0.0.1:1\n      mod: hash\n      ttl: 10\n      mode: list\n      db: lots\n", []string{
			"7: sinks[0].with.key: required",
			"9: sinks[0].with.mod: unknown setting; did you mean mode?",
			"10: sinks[0].with.ttl: 10 is not a duration",
			"11: sinks[0].with.mode: list is not supported; expected one of hash, json",
			"12: sinks[0].with.db: lots is not an integer",
		}},
		{"http", "      timout: 5s\n      max_batch: 0\n      headers: [a]\n      secret: whsec_not-base64!\n", []string{
			"7: sinks[0].with.url: required",
			"8: sinks[0].with.timout: unknown setting; did you mean timeout?",
			"9: sinks[0].with.max_batch: 0 is not a positive integer",
			"10: sinks[0].with.headers: expected a map",
			"11: sinks[0].with.secret: starts with whsec_",
		}},
		{"hubspot", "      tokn: x\n      requests_per_10s: lots\n      associations:\n" +
			"        - {to_object_type: companies, to_id_property: domain, from_field: d, association_type_id: 279, association_category: MINE}\n", []string{
			"7: sinks[0].with.token: required",
			"7: sinks[0].with.object_type: required",
			"8: sinks[0].with.tokn: unknown setting; did you mean token?",
			"9: sinks[0].with.requests_per_10s: lots is not an integer",
			"11: sinks[0].with.associations[0].association_category: MINE is not supported; expected one of HUBSPOT_DEFINED",
		}},
		{"salesforce", "      client_id: abc\n      sobjct: Account\n      auth: password\n      bulk_threshold: lots\n      external_id_field: Ext__c\n", []string{
			"7: sinks[0].with.sobject: required",
			"7: sinks[0].with.client_secret: required",
			"9: sinks[0].with.sobjct: unknown setting; did you mean sobject?",
			"10: sinks[0].with.auth: password is not supported; expected one of client_credentials, jwt",
			"11: sinks[0].with.bulk_threshold: lots is not an integer",
		}},
		{"shopify", "      shop: my-store.myshopify.com\n      tokn: x\n      timeout: soon\n      reason: because\n", []string{
			"7: sinks[0].with.token: required",
			"9: sinks[0].with.tokn: unknown setting; did you mean token?",
			"10: sinks[0].with.timeout: expected a duration",
			"11: sinks[0].with.reason: because is not supported; expected one of correction",
		}},
		{"kafka", "      topik: out\n      timeout: 10\n      format: avro\n      brokers: [\"\"]\n", []string{
			"7: sinks[0].with.topic: required",
			"8: sinks[0].with.topik: unknown setting; did you mean topic?",
			"9: sinks[0].with.timeout: 10 is not a duration",
			"10: sinks[0].with.format: avro is not supported; expected one of json",
			"11: sinks[0].with.brokers: empty entry",
		}},
	}
	bin := buildBinary(t)
	for _, tc := range cases {
		t.Run(tc.connector, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pipeline.yaml")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(head, tc.connector)+tc.with), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runBinary(t, bin, nil, "validate", "-c", path)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, path+":"+w) {
					t.Errorf("output lacks %q:\n%s", path+":"+w, out)
				}
			}
		})
	}
}

// TestValidateExpressionPosition: a map expression or a filter that does not compile is reported
// at the file's line and column of the place in the expression, in the same run as a mistake in
// the sink's settings.
func TestValidateExpressionPosition(t *testing.T) {
	src := "kafka: {brokers: [127.0.0.1:1]}\nsinks:\n  - name: s\n    topics: [t]\n    connector: http\n    key: [id]\n" +
		"    with: {url: \"http://127.0.0.1:1/hook\", tiemout: 5s}\n    map:\n      id: after.id\n      qty: after.qty +* 2\n" +
		"      name: \"after.name +\"\n    filter: |\n      after.qty > 1 &&\n        ) \n"
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runBinary(t, buildBinary(t), nil, "validate", "-c", path)
	want := []string{
		path + ":7: sinks[0].with.tiemout: unknown setting; did you mean timeout?",   // reported with the expressions, in one run
		path + ":10:23: sinks[0].map.qty (sink s): unexpected token Operator(\"*\")", // `      qty: after.qty +* 2`: the * is column 23
		path + ":11:25: sinks[0].map.name (sink s): unexpected token EOF",            // the text starts after the quote (column 14); its end is 12 on
		path + ":14: sinks[0].filter (sink s): unexpected token Bracket(\")\")",      // a block: its second line
	}
	for _, w := range want {
		if code != 2 || !strings.Contains(out, w) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, w, out)
		}
	}
}

// TestValidateUnsetCredential: a setting whose environment variable is unset is not checked but
// counts as given, so that the salesforce sink below is read as using the JWT flow (whose key
// file it names) rather than told it lacks a client secret.
func TestValidateUnsetCredential(t *testing.T) {
	src := "kafka: {brokers: [127.0.0.1:1]}\nsinks:\n  - name: sf\n    topics: [t]\n    connector: salesforce\n    key: [id]\n" +
		"    with:\n      client_id: abc\n      username: u@example.com\n      private_key_file: ${BF_TEST_UNSET_KEY}\n" +
		"      sobject: Account\n      external_id_field: Ext__c\n"
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("BF_TEST_UNSET_KEY")
	out, code := runBinary(t, buildBinary(t), nil, "validate", "-c", path)
	if code != 0 || !strings.Contains(out, path+":10: sinks[0].with.private_key_file: BF_TEST_UNSET_KEY not set") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
