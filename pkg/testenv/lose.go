package testenv

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LoseNextProduce makes the broker acknowledge the next produce request that carries records
// of topic alone at offset 0 of their partitions, without keeping them: a broker that lost
// records after acknowledging them (an unclean leader election, a truncated log) and hands
// their offsets out again. Requests that also carry other topics' records go through. The flag
// returned is set once a request was so answered.
func (k *Kafka) LoseNextProduce(ctx context.Context, topic string) (*atomic.Bool, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = td[topic].Err
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, err)
	}
	id := td[topic].ID
	var lost atomic.Bool
	k.Cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			if rt.Topic != topic && rt.TopicID != id {
				return nil, nil, false // the broker answers, and the next request is looked at
			}
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.BaseOffset = rp.Partition, 0
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		lost.Store(true)
		return resp, nil, true // answered: the control is dropped
	})
	return &lost, nil
}

// EmptyNextLogEnds makes the broker answer the next request for the latest offsets of topic's
// partitions (and of no other topic) as if their logs were empty: a broker that lost the
// records of the topic (an unclean leader election, a truncated log) while nobody wrote to it.
// Other requests go through. The flag returned is set once a request was so answered.
func (k *Kafka) EmptyNextLogEnds(topic string) *atomic.Bool {
	var answered atomic.Bool
	k.Cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		lr := req.(*kmsg.ListOffsetsRequest)
		resp := lr.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range lr.Topics {
			if rt.Topic != topic {
				return nil, nil, false // the broker answers, and the next request is looked at
			}
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				if rp.Timestamp != -1 { // not the latest offset
					return nil, nil, false
				}
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset, sp.Timestamp, sp.LeaderEpoch = rp.Partition, 0, -1, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		answered.Store(len(resp.Topics) > 0)
		return resp, nil, len(resp.Topics) > 0
	})
	return &answered
}
