// FeatureStats: the offline statistics every stage reads (output of `streamrec stats`).
//
// - per dense field: min and max of t(x) = sign(x)·log1p(|x|) (see `DenseTransform`)
// - per categorical field: category → global id for categories seen at least `minFrequency` times
//   (ids laid out as `FeatureIdLayout` says), with their counts
//
// File format (version 1), UTF-8 text, one record per line:
//
//     {"format":"streamrec-feature-stats","version":1,"min_frequency":…,"dense_min":[…],
//      "dense_max":[…],"rows":N,"rejected":M,"next_id":…,"categories":C}      ← one line
//     field \t id \t count \t category-bytes                                 ← C lines, id order
//
// `field` is the categorical field index 0..<26 (C1 = 0), `id` the global id, `count` the number of
// occurrences in the statistics pass, then the category's raw bytes (never a tab or newline: the
// parser refuses those). Dense min/max are written as the exact decimal of the Float32 value.

import Foundation

// MARK: - Errors

/// Why a feature-stats file could not be read. The description says what to do.
public struct FeatureStatsError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable { case badMagic, unsupportedVersion, malformedHeader, malformedEntry,
                                          duplicateId, duplicateCategory, countMismatch, io }
    public var kind: Kind
    public var message: String
    public var description: String { message }
    init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
}

// MARK: - FeatureStats

public struct FeatureStats: Sendable, Equatable {
    public static let formatName = "streamrec-feature-stats"
    public static let formatVersion = 1

    /// Categories seen fewer times than this in the statistics pass map to their field's OOV id.
    public var minFrequency: Int
    /// Per dense field, min and max of t(x) over present values (both 0 if a field had no values).
    public var denseMin: [Float]
    public var denseMax: [Float]
    /// Rows accepted / rejected in the statistics pass.
    public var rows: Int
    public var rejected: Int
    /// The next unassigned id (= firstCategoryId + number of categories when built offline).
    public internal(set) var nextId: Int32
    /// The dictionary: entry → (field, bytes, id, count).
    public internal(set) var categories: CategoryTable

    public init(minFrequency: Int, denseMin: [Float], denseMax: [Float], rows: Int, rejected: Int) {
        precondition(denseMin.count == CriteoSchema.denseCount && denseMax.count == CriteoSchema.denseCount)
        self.minFrequency = minFrequency
        self.denseMin = denseMin
        self.denseMax = denseMax
        self.rows = rows
        self.rejected = rejected
        self.nextId = FeatureIdLayout.firstCategoryId
        self.categories = CategoryTable()
    }

    /// Number of known categories (all fields).
    public var categoryCount: Int { categories.count }

    /// Id of a category, or nil if it is not in the dictionary (then the field's OOV id applies).
    public func id(field: Int, bytes: UnsafeRawBufferPointer) -> Int32? {
        categories.find(field: field, bytes: bytes).map { categories.ids[$0] }
    }

    /// Ids of all 26 categories of `row` into `ids[0..<26]`, with 0 for a category not in the
    /// dictionary. The lookups are issued together (see `CategoryTable.findAll`).
    public func categoryIds(of row: CriteoRow, into ids: UnsafeMutablePointer<Int32>) {
        let n = CriteoSchema.categoricalCount
        row.bytes.withUnsafeBytes { raw in
            row.catStart.withUnsafeBufferPointer { starts in
                row.catEnd.withUnsafeBufferPointer { ends in
                    // An empty row's bytes may have no storage; any valid address does for zero lengths.
                    let base = raw.baseAddress ?? UnsafeRawPointer(ids)
                    categories.findAll(n, base: base, keyStarts: starts.baseAddress!, keyEnds: ends.baseAddress!, into: ids)
                }
            }
        }
        categories.ids.withUnsafeBufferPointer { table in
            for j in 0..<n { let e = ids[j]; ids[j] = e >= 0 ? table[Int(e)] : 0 }
        }
    }

    /// Id of a category given as a String (convenience, not for hot paths).
    public func id(field: Int, category: String) -> Int32? {
        var s = category
        return s.withUTF8 { id(field: field, bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Adds a category at `nextId` (online growth) and returns its id; returns the existing id if known.
    @discardableResult
    public mutating func append(field: Int, bytes: UnsafeRawBufferPointer, count: Int64 = 0) -> Int32 {
        precondition(field >= 0 && field < CriteoSchema.categoricalCount)
        let (e, inserted) = categories.findOrInsert(field: field, bytes: bytes)
        if inserted {
            categories.setId(nextId, at: e)
            categories.setCount(count, at: e)
            nextId += 1
        }
        return categories.ids[e]
    }

    /// The model weight for dense field `i` with raw value `x` (not missing).
    @inlinable
    public func denseWeight(field i: Int, value x: Float) -> Float {
        DenseTransform.normalise(DenseTransform.transform(x), min: denseMin[i], max: denseMax[i])
    }

    /// Calls `body` for every category in id order.
    public func forEachCategory(_ body: (_ field: Int, _ id: Int32, _ count: Int64, _ bytes: ArraySlice<UInt8>) throws -> Void) rethrows {
        let order = (0..<categories.count).sorted { categories.ids[$0] < categories.ids[$1] }
        for e in order {
            try body(categories.field(at: e), categories.ids[e], categories.counts[e], categories.bytes(at: e))
        }
    }

    /// Same header fields and the same (field, bytes, id, count) set, in any order.
    public static func == (a: FeatureStats, b: FeatureStats) -> Bool {
        guard a.minFrequency == b.minFrequency, a.denseMin == b.denseMin, a.denseMax == b.denseMax,
              a.rows == b.rows, a.rejected == b.rejected, a.nextId == b.nextId,
              a.categories.count == b.categories.count else { return false }
        for e in 0..<a.categories.count {
            let found: Int? = a.categories.bytes(at: e).withUnsafeBytes {
                b.categories.find(field: a.categories.field(at: e), bytes: $0)
            }
            guard let f = found, b.categories.ids[f] == a.categories.ids[e],
                  b.categories.counts[f] == a.categories.counts[e] else { return false }
        }
        return true
    }
}

// MARK: - Serialisation

extension FeatureStats {
    /// The whole file as bytes.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + categories.count * 24)
        func floats(_ v: [Float]) -> String { "[" + v.map { "\(Double($0))" }.joined(separator: ",") + "]" }
        let header = "{\"format\":\"\(Self.formatName)\",\"version\":\(Self.formatVersion),"
            + "\"min_frequency\":\(minFrequency),\"dense_min\":\(floats(denseMin)),\"dense_max\":\(floats(denseMax)),"
            + "\"rows\":\(rows),\"rejected\":\(rejected),\"next_id\":\(nextId),\"categories\":\(categories.count)}\n"
        out.append(contentsOf: header.utf8)
        forEachCategory { field, id, count, bytes in
            appendDecimal(&out, Int64(field)); out.append(0x09)
            appendDecimal(&out, Int64(id)); out.append(0x09)
            appendDecimal(&out, count); out.append(0x09)
            out.append(contentsOf: bytes); out.append(0x0A)
        }
        return out
    }

    /// Writes the file atomically (temporary name, then rename).
    public func write(to url: URL) throws {
        let w = try BufferedFileWriter(path: url.path, atomic: true)
        w.buffer = serialized()
        try w.close()
    }

    /// Reads and validates a file written by `write(to:)`.
    public static func read(from url: URL) throws(FeatureStatsError) -> FeatureStats {
        let bytes: [UInt8]
        do { bytes = try readFileBytes(url.path) } catch {
            throw FeatureStatsError(.io, "cannot read feature stats: \(error)")
        }
        return try FeatureStats(serialized: bytes, source: url.path)
    }

    private struct Magic: Decodable { var format: String?; var version: Int? }
    private struct Header: Decodable {
        var min_frequency: Int
        var dense_min: [Double]
        var dense_max: [Double]
        var rows: Int
        var rejected: Int
        var next_id: Int
        var categories: Int
    }

    /// Parses and validates a serialised file. `source` names it in error messages.
    public init(serialized bytes: [UInt8], source: String = "feature stats") throws(FeatureStatsError) {
        let regenerate = "regenerate it with `streamrec stats --data FILE --out \(source)`"
        let headerEnd = bytes.firstIndex(of: 0x0A) ?? bytes.count
        let headerBytes = Data(bytes[0..<headerEnd])
        guard bytes.first == UInt8(ascii: "{"),
              let magic = try? JSONDecoder().decode(Magic.self, from: headerBytes),
              magic.format == Self.formatName else {
            throw FeatureStatsError(.badMagic,
                "\(source) is not a StreamRec feature-stats file (its first line must be a JSON header with "
                + "\"format\":\"\(Self.formatName)\"); \(regenerate)")
        }
        guard let version = magic.version else {
            throw FeatureStatsError(.malformedHeader, "\(source): header has no \"version\"; \(regenerate)")
        }
        guard version == Self.formatVersion else {
            throw FeatureStatsError(.unsupportedVersion,
                "\(source) is feature-stats format version \(version), but this streamrec reads version "
                + "\(Self.formatVersion); use a streamrec build that supports version \(version), or \(regenerate)")
        }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: headerBytes) } catch {
            throw FeatureStatsError(.malformedHeader, "\(source): malformed header (\(error)); \(regenerate)")
        }
        let d = CriteoSchema.denseCount
        guard header.dense_min.count == d, header.dense_max.count == d,
              header.min_frequency >= 1, header.rows >= 0, header.rejected >= 0, header.categories >= 0,
              header.next_id >= Int(FeatureIdLayout.firstCategoryId), header.next_id <= Int(Int32.max),
              header.next_id - Int(FeatureIdLayout.firstCategoryId) >= header.categories else {
            throw FeatureStatsError(.malformedHeader,
                "\(source): header values out of range (need \(d) dense_min/dense_max, min_frequency ≥ 1, "
                + "next_id ≥ \(FeatureIdLayout.firstCategoryId) + categories); \(regenerate)")
        }
        self.init(minFrequency: header.min_frequency, denseMin: header.dense_min.map { Float($0) },
                  denseMax: header.dense_max.map { Float($0) }, rows: header.rows, rejected: header.rejected)
        nextId = Int32(header.next_id)
        categories = CategoryTable(minimumCapacity: header.categories)
        categories.reserve(entries: header.categories, keyBytes: max(0, bytes.count - headerEnd - header.categories * 10))

        var seenIds: [Int32] = []
        seenIds.reserveCapacity(header.categories)
        var entries = 0
        var lineNo = 1
        var pos = headerEnd + 1
        let n = bytes.count
        let result: FeatureStatsError? = bytes.withUnsafeBytes { raw in
            func bad(_ what: String) -> FeatureStatsError {
                FeatureStatsError(.malformedEntry, "\(source) line \(lineNo): \(what); \(regenerate)")
            }
            func number(_ p: inout Int, _ end: Int) -> Int64? {
                var v: Int64 = 0
                var digits = 0
                while p < end, raw[p] != 0x09 {
                    let dg = raw[p] &- 0x30
                    if dg > 9 || digits >= 18 { return nil }
                    v = v * 10 + Int64(dg); digits += 1; p += 1
                }
                if digits == 0 || p >= end { return nil }
                p += 1  // the tab
                return v
            }
            while pos < n {
                lineNo += 1
                var end = pos
                while end < n && raw[end] != 0x0A { end += 1 }
                var p = pos
                guard let field = number(&p, end), let id = number(&p, end), let count = number(&p, end) else {
                    return bad("expected `field \\t id \\t count \\t category`")
                }
                guard field < CriteoSchema.categoricalCount else { return bad("field \(field) is not in 0..<26") }
                guard id >= Int64(FeatureIdLayout.firstCategoryId) && id < Int64(header.next_id) else {
                    return bad("id \(id) is outside [\(FeatureIdLayout.firstCategoryId), next_id = \(header.next_id))")
                }
                guard count >= 0 else { return bad("negative count") }
                let cat = UnsafeRawBufferPointer(rebasing: raw[p..<end])
                if cat.contains(0x09) { return bad("category contains a tab") }
                let (e, inserted) = categories.findOrInsert(field: Int(field), bytes: cat)
                if !inserted {
                    return FeatureStatsError(.duplicateCategory,
                        "\(source) line \(lineNo): category \"\(String(decoding: cat, as: UTF8.self))\" of field \(field) "
                        + "appears twice; the file is corrupt, \(regenerate)")
                }
                categories.setId(Int32(id), at: e)
                categories.setCount(count, at: e)
                seenIds.append(Int32(id))
                entries += 1
                pos = end + 1
            }
            return nil
        }
        if let result { throw result }
        guard entries == header.categories else {
            throw FeatureStatsError(.countMismatch,
                "\(source): header says \(header.categories) categories but the file has \(entries) "
                + "(truncated?); \(regenerate)")
        }
        seenIds.sort()
        for k in seenIds.indices.dropFirst() where seenIds[k] == seenIds[k - 1] {
            throw FeatureStatsError(.duplicateId, "\(source): id \(seenIds[k]) is assigned twice; the file is corrupt, \(regenerate)")
        }
    }
}

@inline(__always)
func appendDecimal(_ out: inout [UInt8], _ v: Int64) {
    if v < 0 { out.append(UInt8(ascii: "-")); appendDecimal(&out, -v); return }
    if v < 10 { out.append(0x30 + UInt8(v)); return }
    var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
              UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var x = v
    var k = 0
    withUnsafeMutableBytes(of: &tmp) { t in
        while x > 0 { t[k] = 0x30 + UInt8(x % 10); x /= 10; k += 1 }
        while k > 0 { k -= 1; out.append(t[k]) }
    }
}

// MARK: - Builder

/// Accumulates statistics over parsed rows; `build(minFrequency:)` turns them into `FeatureStats`.
///
/// Memory is one hash-table entry per distinct (field, category) seen. Builders over disjoint
/// parts of the data can be combined with `merge(_:)` (e.g. one per thread).
public struct FeatureStatsBuilder: Sendable {
    public private(set) var rows = 0
    public private(set) var rejected = 0
    /// Min/max of the raw values (t is monotone, so min/max of t are t(min)/t(max)).
    var rawMin = [Float](repeating: .infinity, count: CriteoSchema.denseCount)
    var rawMax = [Float](repeating: -.infinity, count: CriteoSchema.denseCount)
    var counts = CategoryTable(minimumCapacity: 4096)

    public init() {}

    /// Number of distinct (field, category) pairs seen so far.
    public var distinctCategories: Int { counts.count }

    public mutating func add(_ row: CriteoRow) {
        rows += 1
        for i in 0..<CriteoSchema.denseCount {
            let x = row.dense[i]
            if x.isNaN { continue }
            if x < rawMin[i] { rawMin[i] = x }
            if x > rawMax[i] { rawMax[i] = x }
        }
        row.bytes.withUnsafeBytes { raw in
            for j in 0..<CriteoSchema.categoricalCount {
                let s = Int(row.catStart[j]), e = Int(row.catEnd[j])
                counts.addCount(field: j, bytes: UnsafeRawBufferPointer(rebasing: raw[s..<e]))
            }
        }
    }

    /// Counts a rejected row (reported in the stats header).
    public mutating func addRejected(_ n: Int = 1) { rejected += n }

    /// Adds another builder's counts into this one.
    public mutating func merge(_ other: FeatureStatsBuilder) {
        rows += other.rows
        rejected += other.rejected
        for i in 0..<CriteoSchema.denseCount {
            rawMin[i] = min(rawMin[i], other.rawMin[i])
            rawMax[i] = max(rawMax[i], other.rawMax[i])
        }
        for e in 0..<other.counts.count {
            _ = other.counts.bytes(at: e).withUnsafeBytes {
                counts.addCount(field: other.counts.field(at: e), bytes: $0, by: other.counts.counts[e])
            }
        }
    }

    /// The statistics: categories with count ≥ `minFrequency` get ids from `FeatureIdLayout.firstCategoryId` (52) upward, by field,
    /// then descending count, ties by bytes.
    public func build(minFrequency: Int) -> FeatureStats {
        precondition(minFrequency >= 1, "minFrequency must be at least 1")
        var dmin = [Float](repeating: 0, count: CriteoSchema.denseCount)
        var dmax = dmin
        for i in 0..<CriteoSchema.denseCount where rawMin[i] <= rawMax[i] {
            dmin[i] = DenseTransform.transform(rawMin[i])
            dmax[i] = DenseTransform.transform(rawMax[i])
        }
        var stats = FeatureStats(minFrequency: minFrequency, denseMin: dmin, denseMax: dmax,
                                 rows: rows, rejected: rejected)
        var kept = (0..<counts.count).filter { counts.counts[$0] >= Int64(minFrequency) }
        kept.sort { a, b in
            let fa = counts.fields[a], fb = counts.fields[b]
            if fa != fb { return fa < fb }
            let ca = counts.counts[a], cb = counts.counts[b]
            if ca != cb { return ca > cb }
            return counts.compareBytes(a, b) < 0
        }
        var table = CategoryTable(minimumCapacity: kept.count)
        table.reserve(entries: kept.count, keyBytes: kept.reduce(0) { $0 + Int(counts.lengths[$1]) })
        for (rank, e) in kept.enumerated() {
            let slot: Int = counts.bytes(at: e).withUnsafeBytes {
                table.findOrInsert(field: Int(counts.fields[e]), bytes: $0).index
            }
            table.setId(FeatureIdLayout.firstCategoryId + Int32(rank), at: slot)
            table.setCount(counts.counts[e], at: slot)
        }
        stats.categories = table
        stats.nextId = FeatureIdLayout.firstCategoryId + Int32(kept.count)
        return stats
    }
}

// MARK: - Whole-file pass

/// Counts of rejected rows per reason, plus the first few rejections for reporting.
public struct RejectionCounts: Sendable, Equatable {
    public private(set) var byReason: [RejectReason: Int] = [:]
    public private(set) var samples: [LineRejection] = []
    public var maxSamples: Int
    public init(maxSamples: Int = 20) { self.maxSamples = maxSamples }
    public var total: Int { byReason.values.reduce(0, +) }
    public mutating func add(_ r: LineRejection) {
        byReason[r.rejection.reason, default: 0] += 1
        if samples.count < maxSamples { samples.append(r) }
    }
}

extension FeatureStats {
    /// The statistics pass over a Criteo file: parse every line, count rejections, build.
    /// `progress(bytesRead, fileSize)` is called after every 4 MiB chunk.
    public static func compute(file: String, parser: CriteoParser = CriteoParser(), minFrequency: Int,
                               progress: ((Int64, Int64?) -> Void)? = nil) throws -> (stats: FeatureStats, rejections: RejectionCounts) {
        let reader = try LineReader(path: file, maxLineLength: parser.maxLineLength)
        var builder = FeatureStatsBuilder()
        var rejections = RejectionCounts()
        var row = CriteoRow()
        let size = reader.fileSize
        try reader.forEachLine(progress: progress.map { p in { p($0, size) } }) { line, number in
            do throws(RowRejection) {
                try parser.parse(line, into: &row)
                builder.add(row)
            } catch {
                builder.addRejected()
                rejections.add(LineRejection(line: number, rejection: error))
            }
        }
        return (builder.build(minFrequency: minFrequency), rejections)
    }
}
