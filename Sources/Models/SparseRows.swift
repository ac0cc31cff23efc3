import StreamRecNumerics

/// Maps global feature ids to dense slots, created on first sight. Memory is one Int32 per id
/// up to the largest id seen (ids come from the feature dictionaries, so they are compact) plus
/// what the row stores hold for slots actually used.
public final class IdIndex: @unchecked Sendable {
    private var slotOfId: [Int32] = []
    public private(set) var idOfSlot: [Int32] = []

    public init() {}

    public var count: Int { idOfSlot.count }

    @inline(__always)
    public func existingSlot(_ id: Int32) -> Int32? {
        let i = Int(id)
        guard i >= 0, i < slotOfId.count else { return nil }
        let s = slotOfId[i]
        return s >= 0 ? s : nil
    }

    /// The slot of `id`, creating it (and calling `onCreate`) when new.
    @inline(__always)
    public func slot(_ id: Int32, onCreate: (Int32, Int32) -> Void) -> Int32 {
        precondition(id >= 0, "feature ids are non-negative (got \(id))")
        let i = Int(id)
        if i < slotOfId.count, slotOfId[i] >= 0 { return slotOfId[i] }
        if i >= slotOfId.count {
            let newCount = max(i + 1, slotOfId.count * 2, 1024)
            slotOfId.append(contentsOf: repeatElement(-1, count: newCount - slotOfId.count))
        }
        let s = Int32(idOfSlot.count)
        slotOfId[i] = s
        idOfSlot.append(id)
        onCreate(id, s)
        return s
    }
}

/// Rows of `dim` floats by slot, plus `states` optimizer-state rows of the same shape, stored in
/// fixed-size chunks so growth never copies existing rows.
public final class RowStore: @unchecked Sendable {
    public let dim: Int
    public let stateCount: Int
    static let chunkRows = 4096
    private var chunks: [FloatBuffer] = []   // each: chunkRows × dim × (1 + stateCount)
    public private(set) var count = 0

    public init(dim: Int, states: Int) {
        self.dim = dim
        self.stateCount = states
    }

    private var stride: Int { dim * (1 + stateCount) }

    /// Appends a row (values and states zero) and returns its slot.
    @discardableResult
    public func append() -> Int32 {
        if count == chunks.count * Self.chunkRows {
            chunks.append(FloatBuffer(count: Self.chunkRows * stride))
        }
        count += 1
        return Int32(count - 1)
    }

    /// The parameter row of `slot` (states follow it: `state(k, slot)`).
    @inline(__always)
    public func row(_ slot: Int32) -> UnsafeMutablePointer<Float> {
        let s = Int(slot)
        return chunks[s / Self.chunkRows].pointer + (s % Self.chunkRows) * stride
    }

    @inline(__always)
    public func state(_ k: Int, _ slot: Int32) -> UnsafeMutablePointer<Float> {
        row(slot) + dim * (k + 1)
    }

    /// A deep copy of the chunks (one memcpy each): the cheap part of a checkpoint snapshot.
    public func copyChunks() -> [FloatBuffer] {
        chunks.map { c in
            let copy = FloatBuffer(count: c.count)
            copy.pointer.update(from: c.pointer, count: c.count)
            return copy
        }
    }

    /// Reads slot `slot`'s part `k` (0 = values, 1… = optimizer states) from copied chunks.
    public static func row(in chunks: [FloatBuffer], slot: Int32, part k: Int, dim: Int, states: Int) -> UnsafeMutablePointer<Float> {
        let s = Int(slot), stride = dim * (1 + states)
        return chunks[s / chunkRows].pointer + (s % chunkRows) * stride + dim * k
    }

    /// The memory of rows `rows` as contiguous pieces (one per chunk they span), in slot order.
    /// Only for a store without optimizer states, whose rows within a chunk are back to back:
    /// a loader reads a `[rows × dim]` tensor straight into them.
    public func contiguousSegments(rows: Range<Int>) -> [UnsafeMutableBufferPointer<Float>] {
        precondition(stateCount == 0, "rows are contiguous only in a store without optimizer states")
        precondition(rows.lowerBound >= 0 && rows.upperBound <= count, "rows \(rows) outside 0..<\(count)")
        var out: [UnsafeMutableBufferPointer<Float>] = []
        var s = rows.lowerBound
        while s < rows.upperBound {
            let end = min(rows.upperBound, (s / Self.chunkRows + 1) * Self.chunkRows)
            out.append(UnsafeMutableBufferPointer(start: row(Int32(s)), count: (end - s) * dim))
            s = end
        }
        return out
    }

    /// Bytes held (parameters and optimizer state), for memory reports.
    public var allocatedBytes: Int { chunks.count * Self.chunkRows * stride * 4 }
}

/// One sparse table's gradient for a step, in sum form: the unique ids the step touched and, for
/// each id, `widths[k]` floats in each part k (Wide&Deep: the deep row and the wide weight;
/// REINFORCE: one embedding row). Combining across participants concatenates these lists in rank
/// order, so an id may then repeat; `merged()` sums repeats in list order, which every replica
/// does identically.
public struct SparseGradient: Sendable {
    public let widths: [Int]
    public var ids: [Int32]
    /// `parts[k]` holds `ids.count × widths[k]` floats, row by row in `ids` order.
    public var parts: [[Float]]

    public init(widths: [Int], ids: [Int32] = [], parts: [[Float]]? = nil) {
        self.widths = widths
        self.ids = ids
        self.parts = parts ?? widths.map { _ in [] }
        precondition(self.parts.count == widths.count, "one part per width")
    }

    /// Floats per id over all parts.
    public var rowWidth: Int { widths.reduce(0, +) }

    /// Empties the lists, keeping their storage.
    public mutating func removeAll() {
        ids.removeAll(keepingCapacity: true)
        for k in parts.indices { parts[k].removeAll(keepingCapacity: true) }
    }

    /// The same gradient with each id once, in order of first occurrence; a repeated id's rows are
    /// the sum of its occurrences, added in list order (so every replica computes the same bits).
    /// Without repeats (one participant) this is `self`.
    public func merged() -> SparseGradient {
        guard Set(ids).count != ids.count else { return self }
        var out = SparseGradient(widths: widths)
        var uniqueOf: [Int32: Int] = [:]
        for (k, id) in ids.enumerated() {
            if let u = uniqueOf[id] {
                for (p, w) in widths.enumerated() {
                    for d in 0..<w { out.parts[p][u * w + d] += parts[p][k * w + d] }
                }
            } else {
                uniqueOf[id] = out.ids.count
                out.ids.append(id)
                for (p, w) in widths.enumerated() { out.parts[p].append(contentsOf: parts[p][(k * w)..<((k + 1) * w)]) }
            }
        }
        return out
    }
}

/// The unique slots a batch touches, in first-seen order, and each occurrence's index among them
/// (the `local` indices the embedding and gather backward kernels take). One per table; reused
/// step after step without allocation.
public final class BatchRowSet: @unchecked Sendable {
    private var stamp: [Int32] = []
    private var localOf: [Int32] = []
    private var epoch: Int32 = 0
    /// The slots touched, in first-seen order.
    public private(set) var slots: [Int32] = []

    public init() {}

    /// Starts a new batch.
    public func reset() {
        epoch &+= 1
        if epoch == Int32.max {
            epoch = 1
            for i in stamp.indices { stamp[i] = 0 }
        }
        slots.removeAll(keepingCapacity: true)
    }

    /// The index of `slot` among this batch's unique slots (added when new).
    @inline(__always)
    public func local(_ slot: Int32) -> Int32 {
        let s = Int(slot)
        if s >= stamp.count {
            let n = max(s + 1, stamp.count * 2, 1024)
            stamp.append(contentsOf: repeatElement(0, count: n - stamp.count))
            localOf.append(contentsOf: repeatElement(0, count: n - localOf.count))
        }
        if stamp[s] != epoch {
            stamp[s] = epoch
            localOf[s] = Int32(slots.count)
            slots.append(slot)
        }
        return localOf[s]
    }
}
