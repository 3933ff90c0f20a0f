package kafka

import "testing"

// javaMurmur2 is Kafka's org.apache.kafka.common.utils.Utils.murmur2, written independently of
// franz-go's, to check that keyed records land where Kafka's Java client puts them.
func javaMurmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	rest := length % 4
	tailAt := length - rest
	switch rest {
	case 3:
		h ^= uint32(data[tailAt+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tailAt+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tailAt])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// javaPartition is Kafka's BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % n.
func javaPartition(key []byte, n int32) int32 {
	return (javaMurmur2(key) & 0x7fffffff) % n
}

func TestJavaMurmur2Vectors(t *testing.T) {
	// From Kafka's UtilsTest.testMurmur2.
	for key, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := javaMurmur2([]byte(key)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}
