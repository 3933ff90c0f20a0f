package capture

import (
	"math"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestDecodeDatesBeyondGo covers the dates and timestamps Go's time layouts cannot parse (years
// past 9999, BC) and the infinities, in the forms Debezium gives them.
func TestDecodeDatesBeyondGo(t *testing.T) {
	day := func(y int, m time.Month, d int) int64 { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400 }
	cases := []struct {
		kind change.Kind
		in   string
		want any
	}{
		{change.KindDate, "2024-02-29", int32(day(2024, 2, 29))},
		{change.KindDate, "10000-01-01", int32(day(10000, 1, 1))},
		{change.KindDate, "5874897-12-31", int32(2147483493 - 2440588)}, // PostgreSQL's last date, by Julian day
		{change.KindDate, "4714-11-24 BC", int32(-2440588)},             // its first: Julian day 0
		{change.KindDate, "0001-01-01 BC", int32(day(0, 1, 1))},
		{change.KindDate, "0044-03-15 BC", int32(day(-43, 3, 15))},
		{change.KindDate, "0005-02-29 BC", int32(day(-4, 2, 29))}, // 5 BC is a leap year (year -4)
		{change.KindDate, "infinity", int32(math.MaxInt32)},
		{change.KindDate, "-infinity", int32(math.MinInt32)},
		{change.KindTimestamp, "12345-06-07 08:09:10.5", time.Date(12345, 6, 7, 8, 9, 10, 5e8, time.UTC).UnixMicro()},
		// The last microsecond an int64 since 1970 holds; PostgreSQL goes on to 294276 AD.
		{change.KindTimestamp, "294247-01-10 04:00:54.775806", int64(math.MaxInt64 - 1)},
		{change.KindTimestamp, "4714-11-24 00:00:00 BC", int64(-2440588) * 86400e6},
		{change.KindTimestamp, "1969-12-31 23:59:59.000001", int64(-999999)},
		{change.KindTimestamp, "infinity", int64(math.MaxInt64)},
		{change.KindTimestamp, "-infinity", int64(math.MinInt64)},
		{change.KindTimestampTZ, "10000-01-01 00:00:00+00", "+10000-01-01T00:00:00.000000Z"},
		{change.KindTimestampTZ, "9999-12-31 23:30:00-01", "+10000-01-01T00:30:00.000000Z"},
		{change.KindTimestampTZ, "0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00.000000Z"},
		{change.KindTimestampTZ, "0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00.000000Z"},
		{change.KindTimestampTZ, "1900-01-01 00:00:00+00:19:32", "1899-12-31T23:40:28.000000Z"},
		{change.KindTimestampTZ, "-infinity", "-infinity"},
	}
	for _, tc := range cases {
		got, err := decodeScalar(tc.kind, []byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("%s %q = %#v, %v; want %#v", tc.kind, tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"2023-02-29", "0004-02-29 BC", "0000-01-01 BC", "12-01-01", "2024-01-01x", "2024-1-01"} {
		if v, err := decodeScalar(change.KindDate, []byte(bad)); err == nil {
			t.Errorf("date %q decoded as %v, want an error", bad, v)
		}
	}
	for _, bad := range []string{"2024-01-01 24:00:01", "2024-01-01 12:00", "2024-01-01 12:00:00.1234567", "294276-12-31 23:59:59.999999"} {
		if v, err := decodeScalar(change.KindTimestamp, []byte(bad)); err == nil {
			t.Errorf("timestamp %q decoded as %v, want an error", bad, v)
		}
	}
}

// TestDaysFromCivil checks the calendar arithmetic against Go's over the range Go covers.
func TestDaysFromCivil(t *testing.T) {
	for d := time.Date(-3000, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 3000; d = d.AddDate(0, 0, 13) {
		days := d.Unix() / 86400
		if got := daysFromCivil(int64(d.Year()), int64(d.Month()), int64(d.Day())); got != days {
			t.Fatalf("daysFromCivil(%s) = %d, want %d", d.Format(time.DateOnly), got, days)
		}
		if y, m, dd := civilFromDays(days); y != int64(d.Year()) || m != int64(d.Month()) || dd != int64(d.Day()) {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %s", days, y, m, dd, d.Format(time.DateOnly))
		}
	}
}
