// Featurizer: what one input kind (Criteo rows, behaviour events) contributes to a feature worker.
//
// The engine (`FeaturizeEngine`) owns everything kind-independent: partition ownership, resume
// from Redis progress, offsets and gaps, linger, back-pressure, retries, dead letters, the commit
// queue and SIGTERM. A featurizer parses one message into the partition's unit and, when the
// engine commits, seals the unit into an encoded batch and the state writes that must change in
// the same Lua script as the batch and the progress.
//
// Threading rule: `start`, `refresh`, `load` and `prepare` run on the worker thread while no
// message is being handled; `handle` runs on the handling thread that owns the message's
// partition (`--parse-threads`), so it may change only that partition's state and read shared
// state; `seal` runs on the worker thread or, when a unit fills, on the partition's handling
// thread — it too may only read shared state.

import Features
import FeatureStore
import Streaming

/// The sealed content of one commit unit.
public struct SealedUnit {
    /// The encoded feature batch (nil when the unit produced no rows/transitions).
    public var encodedBatch: [UInt8]?
    /// Rows (or transitions) in the batch.
    public var rows: Int
    /// State writes committed with the unit.
    public var stateWrites: [StateWrite] = []
    /// Unknown-category counts for asynchronous dictionary growth (Criteo), if any.
    public var growth: CategoryTable? = nil
}

public protocol Featurizer: AnyObject {
    /// Per-partition state: the unit being built plus whatever the kind keeps per partition.
    associatedtype Partition: AnyObject
    /// Scratch space of one handling thread.
    associatedtype Scratch: AnyObject

    /// The kind of batch it writes (and so the feature streams it writes to).
    static var batchKind: FeatureBatchKind { get }
    /// Input kind name for logs (criteo, behavior).
    static var inputName: String { get }

    func makePartition(_ partition: Int32, batchSize: Int) -> Partition
    func makeScratch() -> Scratch

    /// Once before consuming (inside the Redis retry funnel): load snapshots, initialise keys.
    /// Returns a line for the log.
    func start(_ store: FeatureStore) throws -> String
    /// About every second: learn what other workers added. Returns how many ids were learnt.
    func refresh(_ store: FeatureStore) throws -> Int
    /// (Re)loads the partition's committed state (at start, and after a rewind or an offset
    /// reset, when in-memory state is ahead of Redis). Drops the unit.
    func load(_ p: Partition, topic: String, partition: Int32, from store: FeatureStore) throws
    /// Before a poll batch is handled: fetch from Redis what handling its messages needs.
    /// `partitions[p]` is partition p's state (nil, or p beyond the end: not owned, skip).
    func prepare(_ batch: KafkaMessageBatch, partitions: [Partition?], store: FeatureStore) throws
    /// Handles message `index` of the poll batch (its value), of the partition; returns why it
    /// is refused (→ dead letter), or nil.
    func handle(_ value: UnsafeRawBufferPointer, index: Int, into p: Partition, scratch: Scratch) -> RowRejection?
    /// Rows (or transitions) in the partition's unit so far.
    func rows(_ p: Partition) -> Int
    /// Seals the partition's unit (the engine has filled in its source) and starts the next one.
    func seal(_ p: Partition, source: FeatureBatchSource, topic: String, partition: Int32) -> SealedUnit
}

// Concrete entry points: `FeaturizeEngine` is generic, and generic code called from another
// module runs unspecialized (witness-table calls and metadata lookups per message, measured).
// Called here, with the featurizer type known, the optimizer specializes the whole loop.
extension FeaturizeEngine where F == CriteoFeaturizer {
    /// `run()` specialized for Criteo rows.
    public func runCriteo() throws -> FeaturizeSummary { try run() }
}

extension FeaturizeEngine where F == BehaviorFeaturizer {
    /// `run()` specialized for behaviour events.
    public func runBehavior() throws -> FeaturizeSummary { try run() }
}
