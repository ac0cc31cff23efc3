// CriteoFeaturizer: Criteo rows → `rows` feature batches (dense min/max normalisation, categories
// through the shared online dictionary). The engine around it is `FeaturizeEngine`.
//
// Categories missing from the local cache get the field's OOV id and are counted; the counts of a
// committed unit go to the committer's grower (`FeatureStore.growDictionary`) and the cache tails
// sr:dict:log, so rows in LATER units use new ids. Rows already encoded keep the OOV id.

import Features
import FeatureStore
import Streaming

public final class CriteoFeaturizer: Featurizer {
    public static let batchKind = FeatureBatchKind.rows
    public static let inputName = "criteo"

    let snapshot: FeatureStats
    let statsSource: String
    /// The snapshot plus ids learnt online; changed only by `start`/`refresh` (no handler runs).
    var cache: DictionaryCache
    /// Dense normalisation from the snapshot (the shared `FeatureEncoder`).
    let denseEncoder: FeatureEncoder
    let parser = CriteoParser(labels: .required)

    public init(stats: FeatureStats, statsSource: String) {
        snapshot = stats
        self.statsSource = statsSource
        cache = DictionaryCache(snapshot: stats)
        denseEncoder = FeatureEncoder(stats: stats)
    }

    /// One partition's unit: up to B encoded rows and the unknown categories met in them.
    public final class Partition {
        let batchSize: Int
        let ids: UnsafeMutableBufferPointer<Int32>
        let weights: UnsafeMutableBufferPointer<Float>
        let labels: UnsafeMutableBufferPointer<Float>
        var rows = 0
        var unknown = CategoryTable(minimumCapacity: 256)

        init(batchSize: Int) {
            self.batchSize = batchSize
            let f = CriteoSchema.fieldCount
            ids = .allocate(capacity: batchSize * f)
            weights = .allocate(capacity: batchSize * f)
            labels = .allocate(capacity: batchSize)
        }

        deinit { ids.deallocate(); weights.deallocate(); labels.deallocate() }

        func reset() {
            rows = 0
            if unknown.count > 0 { unknown = CategoryTable(minimumCapacity: 256) }
        }
    }

    public final class Scratch { var row = CriteoRow() }

    public func makePartition(_ partition: Int32, batchSize: Int) -> Partition { Partition(batchSize: batchSize) }
    public func makeScratch() -> Scratch { Scratch() }

    public func start(_ store: FeatureStore) throws -> String {
        let info = try store.loadSnapshot(snapshot, source: statsSource)
        _ = try cache.sync(store)
        return info.loadedNow ? "loaded the dictionary snapshot (\(info.snapshotCategories) categories) into Redis"
                              : "dictionary snapshot already in Redis (loaded from \(info.loadedFrom)); using it"
    }

    public func refresh(_ store: FeatureStore) throws -> Int { try cache.sync(store) }

    public func load(_ p: Partition, topic: String, partition: Int32, from store: FeatureStore) throws { p.reset() }

    public func prepare(_ batch: KafkaMessageBatch, partitions: [Partition?], store: FeatureStore) throws {}

    public func rows(_ p: Partition) -> Int { p.rows }

    public func handle(_ value: UnsafeRawBufferPointer, index: Int, into p: Partition, scratch: Scratch) -> RowRejection? {
        do throws(RowRejection) { try parser.parse(value, into: &scratch.row) } catch { return error }
        encodeRow(scratch.row, into: p)
        return nil
    }

    /// `FeatureEncoder` semantics, plus counting of categories missing from the cache.
    @inline(__always)
    func encodeRow(_ row: CriteoRow, into p: Partition) {
        let f = CriteoSchema.fieldCount, d = CriteoSchema.denseCount
        let ids = p.ids.baseAddress! + p.rows * f
        let weights = p.weights.baseAddress! + p.rows * f
        denseEncoder.encodeDense(row, ids: ids, weights: weights)
        // Categories through the growing cache (the snapshot plus ids learnt online).
        cache.categoryIds(of: row, into: ids + d)
        var missing = false
        for j in 0..<CriteoSchema.categoricalCount {
            weights[d + j] = 1
            if ids[d + j] == 0 { ids[d + j] = FeatureIdLayout.oovId(j); missing = true }
        }
        if missing {
            _ = row.withCategoryBytes { (j, bytes) -> Void? in
                if ids[d + j] == FeatureIdLayout.oovId(j) { p.unknown.addCount(field: j, bytes: bytes) }
                return nil
            }
        }
        p.labels[p.rows] = row.label ?? 0
        p.rows += 1
    }

    public func seal(_ p: Partition, source: FeatureBatchSource, topic: String, partition: Int32) -> SealedUnit {
        var sealed = SealedUnit(encodedBatch: nil, rows: p.rows)
        if p.rows > 0 {
            let f = CriteoSchema.fieldCount
            var bytes: [UInt8] = []
            FeatureBatchCodec.encode(fieldCount: f, rows: p.rows,
                                     ids: UnsafeBufferPointer(rebasing: p.ids[0..<(p.rows * f)]),
                                     weights: UnsafeBufferPointer(rebasing: p.weights[0..<(p.rows * f)]),
                                     labels: UnsafeBufferPointer(rebasing: p.labels[0..<p.rows]),
                                     source: source, into: &bytes)
            sealed.encodedBatch = bytes
        }
        // The unit's unknown-category table moves to the committer as is (no per-category arrays).
        if p.unknown.count > 0 { sealed.growth = p.unknown }
        p.rows = 0
        if p.unknown.count > 0 { p.unknown = CategoryTable(minimumCapacity: 256) }
        return sealed
    }
}
