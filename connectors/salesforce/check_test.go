package salesforce

import (
	"context"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/connectors/salesforce/sftest"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestCheck describes the sObject on the stub: refused credentials, an unknown sObject, an
// external id field not marked External ID, and unknown or read-only mapped fields are each
// reported; a matching sObject passes.
func TestCheck(t *testing.T) {
	s := stub(t, sftest.Config{Describe: map[string][]sftest.Field{
		"Lead":    {{Name: extField, ExternalID: true, Createable: true, Updateable: true}, {Name: "Score__c", Createable: true, Updateable: true}, {Name: "Rating__c"}},
		"Contact": {{Name: extField, Createable: true, Updateable: true}},
	}})
	check := func(with map[string]any, fields ...string) error {
		return Check(context.Background(), sink.Params{Sink: "crm", With: with, Key: []string{extField}}, fields)
	}
	if err := check(settings(s), extField, "Score__c"); err != nil {
		t.Errorf("check of a matching sObject: %v", err)
	}
	cases := []struct {
		name   string
		with   map[string]any
		fields []string
		want   []string
	}{
		{"wrong secret", settings(s, "client_secret", "nope"), nil, []string{"log in"}},
		{"unknown sObject", settings(s, "sobject", "Lede"), nil, []string{"with.sobject: describe Lede", "NOT_FOUND"}},
		{"external id not marked", settings(s, "sobject", "Contact"), nil, []string{"is not marked External ID"}},
		{"unknown and read-only fields", settings(s), []string{"Score__c", "Scroe__c", "Rating__c"},
			[]string{"Lead has no field Scroe__c", "Lead.Rating__c may not be created and updated"}},
	}
	for _, c := range cases {
		err := check(c.with, c.fields...)
		for _, want := range c.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %v, want it to say %q", c.name, err, want)
			}
		}
	}
}
