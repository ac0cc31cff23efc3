// OffsetTracker: the per-partition offset bookkeeping of a feature worker, as a small value-type
// state machine that tests drive directly.
//
// `next` is the first Kafka offset not yet covered by this worker (committed or buffered).
// Messages must arrive with offset ≥ next. An offset above `next` is a jump: either the broker
// dropped the offsets to retention (the partition's low watermark is above `next`: those rows are
// LOST UPSTREAM and must be reported and counted), or the offsets simply carry no message
// (compaction, transaction markers on a real Kafka): covered silently.

public struct OffsetTracker: Sendable, Equatable {
    public private(set) var next: Int64

    public init(next: Int64) { self.next = next }

    public enum Step: Sendable, Equatable {
        /// The expected offset: process the message.
        case inOrder
        /// Below `next`: already covered (redelivery after a re-assign); skip the message.
        case duplicate
        /// Above `next` by `missing` offsets: the caller checks the low watermark
        /// (`retention(lowWatermark:)`) and then calls `skip(to:)`.
        case jump(missing: Int64)
    }

    /// Classifies a message offset without changing state.
    public func classify(_ offset: Int64) -> Step {
        if offset < next { return .duplicate }
        if offset == next { return .inOrder }
        return .jump(missing: offset - next)
    }

    /// Marks `offset` (== next, after a jump was resolved) as consumed.
    public mutating func consume(_ offset: Int64) {
        precondition(offset == next, "consume(\(offset)) but next is \(next)")
        next = offset + 1
    }

    /// The retention check: if the partition's earliest retained offset is above `next`, the
    /// offsets in between were deleted before anyone read them. Returns how many (0 if none) and
    /// continues at the low watermark.
    ///
    ///     var t = OffsetTracker(next: 100); t.retention(lowWatermark: 150) == 50; t.next == 150
    public mutating func retention(lowWatermark low: Int64) -> Int64 {
        guard low > next else { return 0 }
        let lost = low - next
        next = low
        return lost
    }

    /// Covers offsets up to (not including) `offset` that carry no message.
    public mutating func skip(to offset: Int64) {
        if offset > next { next = offset }
    }

    /// Rewinds to a stored progress (after a commit gap).
    public mutating func rewind(to offset: Int64) { next = offset }
}
