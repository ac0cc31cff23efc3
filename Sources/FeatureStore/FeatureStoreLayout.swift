import Features

// FeatureStoreLayout: the Redis layout of the feature store — the contract between feature
// workers (`streamrec featurize`, issue 3), trainers (`streamrec train --source redis`, issue 4)
// and operators (`streamrec status`).
//
// All keys live under a prefix (default "sr"; `--prefix`). S = number of feature shards
// (`--feature-shards`, default 8). Kafka partition p of any topic feeds shard p mod S.
//
// | key                              | type   | written by                 | meaning |
// |----------------------------------|--------|----------------------------|---------|
// | sr:fs:{s}                        | stream | featurize (commit script)  | feature batches of shard s; each entry has field "b" = `FeatureBatchCodec` bytes (batch + topic/partition/offset range/rejected/produced-at) and "n" = its ordinal (sr:appended:{s} after it) |
// | sr:progress:{topic}:{p}          | string | featurize (commit script)  | next Kafka offset of partition p not yet covered by a committed unit (absent = 0) |
// | sr:appended:{s}                  | string | featurize (commit script)  | batches appended to sr:fs:{s}, ever |
// | sr:rows:{s}                      | string | featurize (commit script)  | rows in those batches |
// | sr:trained:{s}                   | string | TRAINERS (SET)             | ordinal "n" of the entry of sr:fs:{s} the trainer's lineage has trained up to (set again on resume, so it follows the checkpointed lineage); pending(s) = appended − trained drives back-pressure |
// | sr:retain:{s}                    | string | TRAINERS (SET)             | stream id every live checkpoint has passed; featurize XTRIMs sr:fs:{s} MINID to it (entries with smaller ids are deleted) |
// | sr:deadletter                    | stream | featurize (commit script)  | refused rows: raw, topic, partition, offset, reason, detail, worker |
// | sr:deadletter:count              | hash   | featurize (commit script)  | reason (`RejectReason` raw value) → count |
// | sr:lost                          | hash   | featurize (commit script)  | "{topic}:{p}" → rows lost upstream (Kafka retention dropped them before anyone read them) |
// | sr:offsetreset:detected          | hash   | featurize                  | "{topic}:{p}" → times the stored progress was found beyond the broker's high watermark (topic recreated, cluster replaced, offsets reset) |
// | sr:offsetreset:applied           | hash   | featurize (reset script)   | "{topic}:{p}" → times the progress was moved back to the broker's earliest offset (`--on-offset-reset restart-from-earliest`) |
// | sr:offsetreset:last              | hash   | featurize                  | "{topic}:{p}" → one line: when, stored progress, broker watermarks, what was done |
// | sr:dict:meta                     | hash   | first featurize (once)     | state (loading/ready), min_frequency, snapshot_version, snapshot_next_id, snapshot_categories, snapshot_checksum (CRC32C of the stats file), loaded_from, loaded_at_ms |
// | sr:dict:next_id                  | string | snapshot load, grow script | next unassigned category id |
// | sr:dict:{field}                  | hash   | snapshot load, grow script | category bytes → id, field 0..<26 |
// | sr:dict:pending:{field}          | hash   | grow script                | every category counted online → its count while below min_frequency, then -id (so one HMGET tells new / pending / assigned) |
// | sr:dict:log                      | stream | grow script                | one entry per ONLINE id assignment: f (field), c (category bytes), i (id); in id order |
// | sr:workers                       | hash   | featurize (every second)   | worker id → JSON heartbeat {worker, assignment, shard, shards, topic, partitions, rows, batches, dead_letters, lost, paused, lease_ms, pid, last_seen_ms} |
// | sr:lease:{topic}:{p}             | hash   | featurize (lease scripts)  | the partition's lease: owner (worker id), token (fencing token); PEXPIREs after the lease time unless renewed. The commit script writes nothing unless `token` is the unit's token |
// | sr:lease:seq                     | string | featurize (acquire script) | the last fencing token handed out (INCR: every acquisition gets a larger one) |
// | sr:members:{topic}               | zset   | featurize (heartbeat script) | live workers of the topic → when their membership expires (Redis TIME, ms); the partitions are shared out among them |
// | sr:train:status                  | string | trainer rank 0 (every 20 steps) | JSON heartbeat {step, samples_trained, ranks, updated_ms, positions} |
// | sr:train:history                 | list   | trainer rank 0 (every --log-every steps) | one JSON `TrainerHistoryPoint` per entry, oldest first {time_ms, step, samples, metrics, samples_per_second, ranks, checkpoint, freshness_ms, kind}; RPUSH + LTRIM to the newest 5000; read by `streamrec dashboard` |
//
// Behaviour keys (`featurize --kind behavior`, issue 10). The feature streams and their counters
// above exist a second time under `sr:rl:` (sr:rl:fs:{s}, sr:rl:appended:{s}, sr:rl:rows:{s},
// sr:rl:trained:{s}, sr:rl:retain:{s}) and hold `transitions` batches; progress, dead letters,
// lost rows and workers are shared (keyed by topic).
//
// | key                              | type   | written by                 | meaning |
// |----------------------------------|--------|----------------------------|---------|
// | sr:rl:u:dict:0, sr:rl:i:dict:0   | hash   | grow script                | user / item id bytes → id (the Criteo dictionary machinery with namespace sr:rl:u / sr:rl:i and one field, 0; also :dict:next_id, :dict:pending:0, :dict:log) |
// | sr:rl:user                       | hash   | featurize (commit script)  | user id bytes → packed state (`UserState`: last H+1 items, the last C distinct consumed items, the pending event) |
// | sr:rl:pending:{topic}:{p}        | zset   | featurize (commit script)  | users of partition p whose newest event still waits for its transition → the time it became pending (added and removed only when that changes; reloaded on restart, so the watermark can release them) |
// | sr:rl:wm                         | hash   | featurize (commit script)  | "{topic}:{p}" → the partition's event-time watermark (largest event time seen, Unix s) |
// | sr:rl:late                       | hash   | featurize (commit script)  | "{topic}:{p}" → events older than watermark − allowed lateness (not counted in popular items) |
// | sr:rl:events                     | hash   | featurize (commit script)  | "{topic}:{p}" → valid behaviour events featurized |
// | sr:rl:pop:{bucket}:{topic}:{p}   | string | featurize (commit script)  | partition p's events per item in [bucket×slide, (bucket+1)×slide) of event time (`PopularBucket`: item id bytes → count), rewritten whole when the unit touched it |
// | sr:rl:pop:buckets                | zset   | featurize (commit script)  | "{bucket}:{topic}:{p}" → bucket; buckets older than a window (+ lateness) behind the watermark are deleted |
// | sr:rl:meta                       | hash   | featurize (start)          | history_length, consumed_limit, session_gap_seconds, reward_window, rewards, window_seconds, slide_seconds, lateness_seconds: set by the first behaviour worker, checked by the others, read by `popular` and servers |
//
// Exactly once: a commit unit (one batch or none, its dead letters, its lost rows, the
// featurizer's state writes — behaviour user states, popular counts, watermark — and the new
// progress) is written by ONE Lua script that first checks `progress == unit.firstOffset`:
// progress > firstOffset means the unit was already committed (a retry after a lost reply or a
// crash) and it is skipped as a duplicate; progress < firstOffset is a gap and an error (the
// worker rewinds its consumer to the stored progress). So every Kafka offset of a partition is
// covered by exactly one committed unit, and every valid row is in exactly one batch.
//
// Trainers (issue 4) read with `FeatureStreamReader`: XREAD/XRANGE on sr:fs:{s} after the last
// stream id they trained (kept in their checkpoint), decode with `FeatureBatchCodec.decode`,
// SET sr:trained:{s} to the ordinal of the last entry their lineage trained, and SET sr:retain:{s} to the smallest stream
// id any live checkpoint still needs (`FeatureStreamReader.markTrained`, `.setRetain`). Until a
// trainer sets sr:retain:{s}, nothing is trimmed; back-pressure (--max-pending) bounds memory.
//
// Dictionary: the offline snapshot (`streamrec stats`) is loaded once (guarded by HSETNX on
// sr:dict:meta "state"); categories first seen online are counted in sr:dict:pending:{field} and
// get an id from sr:dict:next_id once they reach min_frequency, in the same script that logs
// them, so all shards see the same id. Workers keep a local cache (their snapshot file, verified
// against snapshot_checksum, plus the tail of sr:dict:log); a row whose category was unknown when
// it was encoded keeps its field's OOV id — only rows encoded after the cache learnt the id use it
// (no row is re-encoded). Pending counts are not part of the exactly-once unit: a crash between
// counting and committing can count a batch's unknown categories twice (ids stay identical on
// every shard; only the moment a category crosses the threshold moves).

/// Key names of the feature store under one prefix. `streams` says which batches the feature
/// streams and their counters hold: Criteo rows under `{prefix}:fs:{s}`, behaviour transitions
/// under `{prefix}:rl:fs:{s}` — two pipelines can share one prefix (and one Redis) without their
/// trainers meeting each other's batches.
public struct FeatureStoreLayout: Sendable, Equatable {
    public var prefix: String
    public var streams: FeatureBatchKind
    public init(prefix: String = "sr", streams: FeatureBatchKind = .rows) { self.prefix = prefix; self.streams = streams }

    /// Where the feature streams and their counters live.
    var streamBase: String { streams == .rows ? prefix : "\(prefix):rl" }
    public func featureStream(_ shard: Int) -> String { "\(streamBase):fs:\(shard)" }
    public func progress(topic: String, partition: Int32) -> String { "\(prefix):progress:\(topic):\(partition)" }
    public var progressPattern: String { "\(prefix):progress:*" }
    public func appended(_ shard: Int) -> String { "\(streamBase):appended:\(shard)" }
    public func rows(_ shard: Int) -> String { "\(streamBase):rows:\(shard)" }
    public func trained(_ shard: Int) -> String { "\(streamBase):trained:\(shard)" }
    public func retain(_ shard: Int) -> String { "\(streamBase):retain:\(shard)" }
    public var appendedPattern: String { "\(streamBase):appended:*" }
    public var deadLetters: String { "\(prefix):deadletter" }
    public var deadLetterCount: String { "\(prefix):deadletter:count" }
    public var lost: String { "\(prefix):lost" }
    public var offsetResetsDetected: String { "\(prefix):offsetreset:detected" }
    public var offsetResetsApplied: String { "\(prefix):offsetreset:applied" }
    public var offsetResetLast: String { "\(prefix):offsetreset:last" }
    public var dictMeta: String { "\(prefix):dict:meta" }
    public var dictNextId: String { "\(prefix):dict:next_id" }
    public func dict(field: Int) -> String { "\(prefix):dict:\(field)" }
    public func dictPending(field: Int) -> String { "\(prefix):dict:pending:\(field)" }
    public var dictLog: String { "\(prefix):dict:log" }
    public var workers: String { "\(prefix):workers" }
    public func lease(topic: String, partition: Int32) -> String { "\(prefix):lease:\(topic):\(partition)" }
    public var leasePattern: String { "\(prefix):lease:*" }
    public var leaseSequence: String { "\(prefix):lease:seq" }
    public func members(topic: String) -> String { "\(prefix):members:\(topic)" }
    /// Trainer rank 0's heartbeat (JSON: step, samples_trained, ranks, updated_ms, positions).
    public var trainerStatus: String { "\(prefix):train:status" }
    /// Trainer rank 0's capped history list (`TrainerHistory`), one JSON point per --log-every steps.
    public var trainerHistory: String { "\(prefix):train:history" }

    // Behaviour events (featurize --kind behavior); see "Behaviour keys" above.
    /// The namespace of an online id dictionary for users or items (`{ns}:dict:0`, `{ns}:dict:next_id`, …).
    public func behaviorIds(_ space: BehaviorIdSpace) -> String { "\(prefix):rl:\(space.rawValue)" }
    public func behaviorIdMap(_ space: BehaviorIdSpace) -> String { "\(behaviorIds(space)):dict:0" }
    public func behaviorNextId(_ space: BehaviorIdSpace) -> String { "\(behaviorIds(space)):dict:next_id" }
    public var userStates: String { "\(prefix):rl:user" }
    public var eventWatermarks: String { "\(prefix):rl:wm" }
    public var lateEvents: String { "\(prefix):rl:late" }
    public var behaviorEvents: String { "\(prefix):rl:events" }
    public func pendingUsers(topic: String, partition: Int32) -> String { "\(prefix):rl:pending:\(topic):\(partition)" }
    /// One partition's counts in one bucket (`PopularBucket`); the member of `popularBuckets`
    /// is the key without `popularBucketPrefix`.
    public func popular(bucket: Int64, topic: String, partition: Int32) -> String { popularBucketPrefix + popularMember(bucket: bucket, topic: topic, partition: partition) }
    public func popularMember(bucket: Int64, topic: String, partition: Int32) -> String { "\(bucket):\(topic):\(partition)" }
    public var popularBucketPrefix: String { "\(prefix):rl:pop:" }
    public var popularBuckets: String { "\(prefix):rl:pop:buckets" }
    /// Settings every behaviour worker must share, recorded by the first (and read by servers).
    public var behaviorMeta: String { "\(prefix):rl:meta" }

    /// The feature shard that Kafka partition `partition` feeds.
    public static func shard(partition: Int32, shards: Int) -> Int { Int(partition) % shards }
    /// The field name used in sr:lost (and the other per-partition hashes) for a partition.
    public static func lostField(topic: String, partition: Int32) -> String { "\(topic):\(partition)" }
}

/// The two id spaces of behaviour events. Item ids start at 2 (0 pads a short state, 1 is the
/// item OOV id), user ids at 1 (0 is the user OOV id): every id is assigned when first seen, so
/// the OOV ids only stand for ids a server has never seen.
public enum BehaviorIdSpace: String, Sendable, CaseIterable {
    case users = "u", items = "i"
    public var firstId: Int32 { self == .items ? 2 : 1 }
    public var oovId: Int32 { self == .items ? 1 : 0 }
}
