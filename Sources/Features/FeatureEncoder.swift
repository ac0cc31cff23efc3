// Encoding parsed rows into model input (39 ids + 39 weights per row) and packing rows into
// `FeatureBatch`es.

/// A rejected input line: 1-based line number and why.
public struct LineRejection: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var rejection: RowRejection
    public init(line: Int, rejection: RowRejection) { self.line = line; self.rejection = rejection }
    public var description: String { "line \(line): \(rejection)" }
}

/// Maps a `CriteoRow` to 39 (id, weight) pairs with the layout of `FeatureIdLayout`:
/// field f = 0..<13 is dense field f, f = 13..<39 is categorical field f − 13.
///
/// - dense value present: id i, weight = clamp((t(x) − min_t)/(max_t − min_t), 0, 1)
/// - dense missing: id 13 + i, weight 1
/// - category in the dictionary: its id, weight 1; otherwise the field's OOV id 26 + j, weight 1
///
/// Lookups go by bytes into the stats' hash table; nothing is allocated per row.
/// Immutable after init: share one encoder across threads.
public struct FeatureEncoder: Sendable {
    public let stats: FeatureStats
    @usableFromInline let minT: [Float]
    @usableFromInline let invRange: [Float]   // 0 when max == min

    public init(stats: FeatureStats) {
        self.stats = stats
        minT = stats.denseMin
        invRange = (0..<CriteoSchema.denseCount).map { i in
            stats.denseMax[i] > stats.denseMin[i] ? 1 / (stats.denseMax[i] - stats.denseMin[i]) : 0
        }
    }

    /// Writes `CriteoSchema.fieldCount` ids and weights starting at `ids[0]`, `weights[0]`.
    public func encode(_ row: CriteoRow, ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>) {
        encode(row, ids: ids, weights: weights) { _, _ in }
    }

    /// As `encode(_:ids:weights:)`, calling `unknown(field, bytes)` for every category that is
    /// not in the dictionary (it gets its field's OOV id) — feature workers count those for
    /// online dictionary growth. The one implementation of row → ids/weights.
    @inline(__always)
    public func encode(_ row: CriteoRow, ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>,
                       unknown: (Int, UnsafeRawBufferPointer) -> Void) {
        let d = CriteoSchema.denseCount
        encodeDense(row, ids: ids, weights: weights)
        let table = stats.categories
        row.bytes.withUnsafeBytes { raw in
            for j in 0..<CriteoSchema.categoricalCount {
                let s = Int(row.catStart[j]), e = Int(row.catEnd[j])
                let cat = UnsafeRawBufferPointer(rebasing: raw[s..<e])
                if let entry = table.find(field: j, bytes: cat) {
                    ids[d + j] = table.ids[entry]
                } else {
                    ids[d + j] = FeatureIdLayout.oovId(j)
                    unknown(j, cat)
                }
                weights[d + j] = 1
            }
        }
    }

    /// The 13 dense fields: value id with weight clamp((t(x) − min)/(max − min), 0, 1), or the
    /// field's missing id with weight 1. Dense statistics never change online, so feature
    /// workers whose dictionary grows still encode dense fields here.
    @inline(__always)
    public func encodeDense(_ row: CriteoRow, ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>) {
        let d = CriteoSchema.denseCount
        for i in 0..<d {
            let x = row.dense[i]
            if x.isNaN {
                ids[i] = FeatureIdLayout.denseMissingId(i)
                weights[i] = 1
            } else {
                ids[i] = FeatureIdLayout.denseValueId(i)
                var w = (DenseTransform.transform(x) - minT[i]) * invRange[i]
                w = w < 0 ? 0 : (w > 1 ? 1 : w)
                weights[i] = w
            }
        }
    }

    /// Safe variant: writes row `row` of a batch at `offset` (= rowIndex × 39) of the arrays.
    public func encode(_ row: CriteoRow, into ids: inout [Int32], weights: inout [Float], at offset: Int) {
        precondition(offset >= 0 && offset + CriteoSchema.fieldCount <= ids.count
                     && offset + CriteoSchema.fieldCount <= weights.count)
        ids.withUnsafeMutableBufferPointer { ib in
            weights.withUnsafeMutableBufferPointer { wb in
                encode(row, ids: ib.baseAddress! + offset, weights: wb.baseAddress! + offset)
            }
        }
    }
}

/// Turns raw lines into `FeatureBatch`es of `batchSize` rows, collecting rejections.
///
/// ```swift
/// var packer = BatchPacker(encoder: FeatureEncoder(stats: stats), batchSize: 1000)
/// for (n, line) in lines.enumerated() {
///     if let batch = packer.add(line: line, lineNumber: n + 1) { send(batch) }
/// }
/// if let last = packer.flush() { send(last) }
/// report(packer.takeRejections())
/// ```
/// Unlabelled rows (when the parser allows them) get label 0.
public struct BatchPacker: Sendable {
    public let encoder: FeatureEncoder
    public let parser: CriteoParser
    public let batchSize: Int
    var ids: [Int32]
    var weights: [Float]
    var labels: [Float]
    var row = CriteoRow()
    /// Rejections since the last `takeRejections()`.
    public private(set) var rejections: [LineRejection] = []
    /// Totals since creation.
    public private(set) var acceptedRows = 0
    public private(set) var rejectedRows = 0

    public init(encoder: FeatureEncoder, parser: CriteoParser = CriteoParser(), batchSize: Int) {
        precondition(batchSize > 0)
        self.encoder = encoder
        self.parser = parser
        self.batchSize = batchSize
        ids = []; weights = []; labels = []
        reserve()
    }

    mutating func reserve() {
        ids.reserveCapacity(batchSize * CriteoSchema.fieldCount)
        weights.reserveCapacity(batchSize * CriteoSchema.fieldCount)
        labels.reserveCapacity(batchSize)
    }

    /// Rows waiting in the current (incomplete) batch.
    public var pendingRows: Int { labels.count }

    /// Parses and encodes one line; returns a full batch when this line completed one.
    public mutating func add(line: UnsafeRawBufferPointer, lineNumber: Int) -> FeatureBatch? {
        do throws(RowRejection) {
            try parser.parse(line, into: &row)
        } catch {
            rejectedRows += 1
            rejections.append(LineRejection(line: lineNumber, rejection: error))
            return nil
        }
        acceptedRows += 1
        let f = CriteoSchema.fieldCount
        let off = ids.count
        ids.append(contentsOf: repeatElement(0, count: f))
        weights.append(contentsOf: repeatElement(0, count: f))
        labels.append(row.label ?? 0)
        encoder.encode(row, into: &ids, weights: &weights, at: off)
        return labels.count >= batchSize ? flush() : nil
    }

    /// Convenience for `String` lines.
    public mutating func add(line: String, lineNumber: Int) -> FeatureBatch? {
        var s = line
        return s.withUTF8 { add(line: UnsafeRawBufferPointer($0), lineNumber: lineNumber) }
    }

    /// The pending rows as a (possibly short) batch, or nil if there are none.
    public mutating func flush() -> FeatureBatch? {
        guard !labels.isEmpty else { return nil }
        let batch = FeatureBatch(fieldCount: CriteoSchema.fieldCount, ids: ids, weights: weights, labels: labels)
        ids = []; weights = []; labels = []
        reserve()
        return batch
    }

    /// Returns and clears the rejections collected so far.
    public mutating func takeRejections() -> [LineRejection] {
        defer { rejections.removeAll() }
        return rejections
    }

    /// Packs a whole sequence of lines (line numbers from 1); the last batch may be short.
    public static func pack(lines: some Sequence<String>, encoder: FeatureEncoder,
                            parser: CriteoParser = CriteoParser(),
                            batchSize: Int) -> (batches: [FeatureBatch], rejections: [LineRejection]) {
        var packer = BatchPacker(encoder: encoder, parser: parser, batchSize: batchSize)
        var batches: [FeatureBatch] = []
        for (k, line) in lines.enumerated() {
            if let b = packer.add(line: line, lineNumber: k + 1) { batches.append(b) }
        }
        if let b = packer.flush() { batches.append(b) }
        return (batches, packer.takeRejections())
    }
}
