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
