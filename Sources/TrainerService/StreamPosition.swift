/// A Redis stream id ("ms-seq"): where a trainer is in a feature stream.
public struct StreamPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var ms: Int64
    public var seq: Int64

    public static let start = StreamPosition(ms: 0, seq: 0)

    public init(ms: Int64, seq: Int64) { self.ms = ms; self.seq = seq }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = Int64(parts[0]), let seq = Int64(parts[1]), ms >= 0, seq >= 0 else { return nil }
        self.init(ms: ms, seq: seq)
    }

    public var description: String { "\(ms)-\(seq)" }

    public static func < (a: Self, b: Self) -> Bool { (a.ms, a.seq) < (b.ms, b.seq) }

    /// Four Int32 words, for an MPI allgatherv of positions.
    var words: [Int32] {
        [Int32(truncatingIfNeeded: ms >> 32), Int32(truncatingIfNeeded: ms), Int32(truncatingIfNeeded: seq >> 32), Int32(truncatingIfNeeded: seq)]
    }

    init(words w: ArraySlice<Int32>) {
        let a = Array(w)
        ms = Int64(a[0]) << 32 | Int64(UInt32(bitPattern: a[1]))
        seq = Int64(a[2]) << 32 | Int64(UInt32(bitPattern: a[3]))
    }
}

/// Which feature shards a rank reads: shard s belongs to rank s mod N. Rank 0 owns the rule;
/// because every rank can compute it from N alone, a membership change needs no extra message.
public enum ShardAssignment {
    public static func shards(rank: Int, size: Int, shardCount: Int) -> [Int] {
        precondition(size > 0 && rank >= 0 && rank < size)
        return (0..<shardCount).filter { $0 % size == rank }
    }

    /// The manifest key of a shard's position.
    public static func key(_ shard: Int) -> String { "fs:\(shard)" }

    public static func shard(fromKey key: String) -> Int? {
        key.hasPrefix("fs:") ? Int(key.dropFirst(3)) : nil
    }
}
