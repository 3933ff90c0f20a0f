package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// execHash writes hash-mode plans in one MULTI/EXEC round trip (two, with the fence's WATCH).
func (c *connector) execHash(ctx context.Context, f *fence, plans []plan, failed *[]sink.RecordError) error {
	cmds := make([][]goredis.Cmder, len(plans))
	queue := func(pipe goredis.Pipeliner) error {
		f.queue(ctx, pipe)
		for i := range plans {
			cmds[i] = c.queueHash(ctx, pipe, &plans[i])
		}
		return nil
	}
	if f == nil {
		_, err := c.client.TxPipelined(ctx, queue)
		return collect(plans, cmds, err, failed)
	}
	err := c.watched(ctx, f, nil, func(tx *goredis.Tx) error {
		_, err := tx.TxPipelined(ctx, queue)
		return err
	})
	if errors.Is(err, sink.ErrFenced) || sink.IsRetryable(err) {
		return err
	}
	return collect(plans, cmds, err, failed)
}

// queueHash queues the commands of one hash-mode plan and returns them.
func (c *connector) queueHash(ctx context.Context, pipe goredis.Pipeliner, p *plan) []goredis.Cmder {
	if p.del {
		return []goredis.Cmder{pipe.Del(ctx, p.key)}
	}
	var cmds []goredis.Cmder
	if len(p.hset) > 0 {
		cmds = append(cmds, pipe.HSet(ctx, p.key, p.hset...))
	}
	if len(p.hdel) > 0 {
		cmds = append(cmds, pipe.HDel(ctx, p.key, p.hdel...))
	}
	if c.cfg.ttl > 0 {
		cmds = append(cmds, pipe.PExpire(ctx, p.key, c.cfg.ttl))
	}
	return cmds
}

// collect sorts the outcome of a transaction: nil when all went through; a batch error (retryable
// when transient) when nothing or not all can be known applied; otherwise the records whose
// commands Redis rejected are added to failed, the others having been applied.
func collect(plans []plan, cmds [][]goredis.Cmder, err error, failed *[]sink.RecordError) error {
	if err == nil {
		return nil
	}
	if isExecAbort(err) {
		if cause := firstCmdErr(cmds); cause != nil {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		return wrapBatch("transaction discarded, nothing applied", err)
	}
	var rejected []sink.RecordError
	for i, p := range plans {
		for _, cmd := range cmds[i] {
			cerr := cmd.Err()
			if cerr == nil {
				continue
			}
			if isTransient(cerr) {
				return wrapBatch("apply batch", cerr)
			}
			rejected = append(rejected, sink.RecordError{Index: p.index, Reason: fmt.Sprintf("redis: %s %s: %v", cmd.Name(), p.key, cerr)})
			break
		}
	}
	if len(rejected) == 0 {
		return wrapBatch("apply batch", err)
	}
	*failed = append(*failed, rejected...)
	return nil
}

// firstCmdErr returns the first error of any command.
func firstCmdErr(cmds [][]goredis.Cmder) error {
	for _, cs := range cmds {
		for _, cmd := range cs {
			if err := cmd.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// execJSON merges json-mode plans into the stored objects and writes them in one transaction,
// optimistically: the upserted keys (and the fence key) are WATCHed while read, and the
// transaction is run again if another client changed one of them meanwhile.
func (c *connector) execJSON(ctx context.Context, f *fence, plans []plan, failed *[]sink.RecordError) error {
	keys := upsertKeys(plans)
	if len(keys) == 0 && f == nil {
		return c.writeJSON(ctx, c.client, nil, plans, failed)
	}
	var rejected []sink.RecordError
	err := c.watched(ctx, f, keys, func(tx *goredis.Tx) error {
		rejected = rejected[:0]
		ready, err := mergeStored(ctx, tx, plans, &rejected)
		if err != nil {
			return err
		}
		return c.writeJSON(ctx, tx, f, ready, &rejected)
	})
	if err != nil {
		return markWatchErr(err)
	}
	*failed = append(*failed, rejected...)
	return nil
}

// markWatchErr marks errors of the WATCH itself (connection refused, say) as retryable; errors
// from the reads and writes inside it are marked already.
func markWatchErr(err error) error {
	if sink.IsRetryable(err) || !isTransient(err) {
		return err
	}
	return sink.Retryable(fmt.Errorf("redis: watch: %w", err))
}

// txPipeliner is a client or a WATCH transaction.
type txPipeliner interface {
	TxPipelined(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)
}

// writeJSON SETs the merged documents and DELs the deleted keys in one MULTI/EXEC.
func (c *connector) writeJSON(ctx context.Context, tp txPipeliner, f *fence, plans []plan, failed *[]sink.RecordError) error {
	cmds := make([][]goredis.Cmder, len(plans))
	_, err := tp.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		f.queue(ctx, pipe)
		for i, p := range plans {
			if p.del {
				cmds[i] = []goredis.Cmder{pipe.Del(ctx, p.key)}
			} else {
				cmds[i] = []goredis.Cmder{pipe.Set(ctx, p.key, p.value, c.cfg.ttl)}
			}
		}
		return nil
	})
	return collect(plans, cmds, err, failed)
}

// upsertKeys lists the distinct keys that json-mode upserts read.
func upsertKeys(plans []plan) []string {
	seen := make(map[string]bool, len(plans))
	var keys []string
	for _, p := range plans {
		if !p.del && !seen[p.key] {
			seen[p.key] = true
			keys = append(keys, p.key)
		}
	}
	return keys
}

// mergeStored reads the stored objects of the upserted keys in one pipelined round trip and
// merges each upsert into the object as left by the records before it. Records whose key holds
// something else than a JSON object are rejected.
func mergeStored(ctx context.Context, tx *goredis.Tx, plans []plan, rejected *[]sink.RecordError) ([]plan, error) {
	docs, bad, err := readStored(ctx, tx, upsertKeys(plans))
	if err != nil {
		return nil, err
	}
	ready := make([]plan, 0, len(plans))
	for _, p := range plans {
		if p.del {
			docs[p.key] = jsonDoc{}
			ready = append(ready, p)
			continue
		}
		if reason, ok := bad[p.key]; ok {
			*rejected = append(*rejected, sink.RecordError{Index: p.index, Reason: reason})
			continue
		}
		if err := p.mergeInto(docs, p.key); err != nil {
			*rejected = append(*rejected, sink.RecordError{Index: p.index, Reason: err.Error()})
			continue
		}
		ready = append(ready, p)
	}
	return ready, nil
}

// mergeInto merges the plan's fields into docs[key] and sets the document to write.
func (p *plan) mergeInto(docs map[string]jsonDoc, key string) error {
	doc := docs[key]
	if doc == nil {
		doc = make(jsonDoc, len(p.doc))
		docs[key] = doc
	}
	for name, v := range p.doc {
		doc[name] = v
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("redis: encode JSON object for %s: %w", p.key, err)
	}
	p.value = string(b)
	return nil
}

// readStored GETs keys in one pipeline. It returns the stored objects, the reasons why some keys
// cannot be merged into (wrong type, not a JSON object), or a batch error.
func readStored(ctx context.Context, tx *goredis.Tx, keys []string) (map[string]jsonDoc, map[string]string, error) {
	gets := make([]*goredis.StringCmd, len(keys))
	_, _ = tx.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for i, k := range keys {
			gets[i] = pipe.Get(ctx, k)
		}
		return nil
	})
	docs := make(map[string]jsonDoc, len(keys))
	bad := make(map[string]string)
	for i, k := range keys {
		doc, reason, err := storedDoc(k, gets[i])
		switch {
		case err != nil:
			return nil, nil, err
		case reason != "":
			bad[k] = reason
		case doc != nil:
			docs[k] = doc
		}
	}
	return docs, bad, nil
}

// storedDoc decodes one GET reply: the object (nil when the key does not exist), or the reason
// this key cannot be merged into, or a batch error.
func storedDoc(key string, get *goredis.StringCmd) (jsonDoc, string, error) {
	s, err := get.Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return nil, "", nil
	case err != nil && isTransient(err):
		return nil, "", wrapBatch("read stored JSON", err)
	case err != nil:
		return nil, fmt.Sprintf("redis: GET %s: %v", key, err), nil
	}
	var doc jsonDoc
	if err := json.Unmarshal([]byte(s), &doc); err != nil || doc == nil {
		return nil, fmt.Sprintf("redis: %s holds something else than a JSON object; json mode merges into objects only", key), nil
	}
	return doc, "", nil
}
