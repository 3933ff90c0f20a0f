// Package model runs warehouse models: queries (or whole tables and views, e.g. rebuilt by
// dbt) whose results are published as change events, in the same envelope, encoding and schema
// versions as captured tables, to "<prefix>.model.<name>". Sinks, replays, dead letters and
// status treat a model's topic like any other.
//
// A run has three phases, and only the last two touch anything:
//
//  1. Query and diff. The query runs in one REPEATABLE READ snapshot, every column read as
//     text, and its rows are merged with the state file of the last committed run: (key, row
//     hash) entries in the same order. A key only in the state is a delete, only in the result
//     an insert (op r on the first run), in both with another hash an update. An integer key
//     is read in key order (often from an index) and merged as it streams; any other key is
//     read unordered, partitioned by the hash of its key into bucket files, and each bucket,
//     sorted in memory by (key hash, key), is merged in turn with a state kept in that order
//     (bucket.go): PostgreSQL sorts nothing. Rows are hashed from their text, not decoded; the
//     changes go to a file on disk, and the next state to a temporary file. The merge refuses
//     duplicate keys (adjacent once sorted) and NULL keys. A failing query or a refused result
//     ends the run here, having published nothing.
//  2. Publish. The commit record in "<prefix>._capture" is marked uncommitted, then every
//     change is encoded with capture's encoder and produced, each record carrying its state key
//     and row hash in headers; the run waits for all acknowledgements.
//  3. Commit. The temporary state file is synced and renamed over the state, then the commit
//     record names the run, its row count and the state's checksum.
//
// Before diffing, a run checks that the state file is the last committed one (the record is
// committed and its checksum matches). If not (a new machine, a lost disk, another process ran
// the model meanwhile, or a run stopped while publishing), the state is rebuilt from the
// model's topic: the last record of each key, through the headers, is exactly what sinks have
// seen, so the diff against it misses no delete and re-sends no change a sink already has. A
// crash during publishing may thus re-send, after the rebuild, only changes whose after-image a
// sink may have already applied: applying them again is harmless.
//
// Runs of one model never overlap: each takes a PostgreSQL advisory lock keyed by the topic
// prefix and the model's name, held by its session.
//
// Memory does not grow with the model: the result streams from PostgreSQL (into buckets of
// about 32k rows when they are read unordered), the state and the changes are files read and
// written in order, and a rebuild sorts the topic's records on disk.
package model
