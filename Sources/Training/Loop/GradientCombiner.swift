import Models

// Sums one step's gradients over the participants of a data-parallel job, for every model family:
// one allreduce over the family's fused dense buffer and, for all of its sparse tables together,
// two allgathervs — the ids (each participant's per-table counts first), then the rows. Gathered
// lists are in rank order on every participant, so the families' updates (which merge repeated
// ids in list order) compute the same bits everywhere.

/// Combines a participant's gradients with every other's through `Collectives`.
///
///     let combiner = GradientCombiner()
///     var tables = [grads.users, grads.items]
///     try combiner.combine(dense: grads.dense.buffer, sparse: &tables, over: collectives)
///     grads.users = tables[0]; grads.items = tables[1]
public final class GradientCombiner {
    private var idPayload: [Int32] = []
    private var packed: [Float] = []
    private var gathered: [Float] = []

    public init() {}

    /// Afterwards `dense` holds the sum over participants and each table the concatenation, in
    /// rank order, of every participant's ids and rows. Every participant calls this with the same
    /// dense count and the same tables (count and widths). One participant: nothing to do.
    public func combine(dense: UnsafeMutableBufferPointer<Float>, sparse tables: inout [SparseGradient],
                        over collectives: Collectives) throws {
        guard collectives.participants > 1 else { return }
        try collectives.allreduceSum(dense)
        let T = tables.count
        guard T > 0 else { return }

        // Ids: [count of table 0, …, count of table T−1, ids of table 0, …, ids of table T−1].
        idPayload.removeAll(keepingCapacity: true)
        for t in tables { idPayload.append(Int32(t.ids.count)) }
        for t in tables { idPayload.append(contentsOf: t.ids) }
        let ids = try collectives.allgatherv(idPayload)

        // Every participant's per-table counts, hence each one's row payload: no count exchange.
        var counts: [[Int]] = []          // counts[r][t]
        var newIds = [[Int32]](repeating: [], count: T)
        var floatCounts: [Int32] = []
        var offset = 0
        for r in 0..<ids.counts.count {
            let c = (0..<T).map { Int(ids.values[offset + $0]) }
            counts.append(c)
            var p = offset + T, floats = 0
            for t in 0..<T {
                newIds[t].append(contentsOf: ids.values[p..<(p + c[t])])
                p += c[t]
                floats += c[t] * tables[t].rowWidth
            }
            precondition(p == offset + ids.counts[r], "participant \(r) sent a malformed id payload")
            floatCounts.append(Int32(floats))
            offset += ids.counts[r]
        }

        // Rows: per table, per id, its parts back to back.
        packed.removeAll(keepingCapacity: true)
        for t in tables {
            for u in 0..<t.ids.count {
                for (k, w) in t.widths.enumerated() { packed.append(contentsOf: t.parts[k][(u * w)..<((u + 1) * w)]) }
            }
        }
        let total = floatCounts.reduce(0) { $0 + Int($1) }
        if gathered.count != total { gathered = [Float](repeating: 0, count: total) }
        try packed.withUnsafeBufferPointer { src in
            try gathered.withUnsafeMutableBufferPointer { dst in
                try collectives.allgatherv(src, counts: floatCounts, into: dst)
            }
        }

        // Unpack in rank order.
        for t in 0..<T {
            tables[t].ids = newIds[t]
            for k in tables[t].parts.indices {
                tables[t].parts[k].removeAll(keepingCapacity: true)
                tables[t].parts[k].reserveCapacity(newIds[t].count * tables[t].widths[k])
            }
        }
        var p = 0
        for r in counts.indices {
            for t in 0..<T {
                let widths = tables[t].widths
                for _ in 0..<counts[r][t] {
                    for (k, w) in widths.enumerated() {
                        tables[t].parts[k].append(contentsOf: gathered[p..<(p + w)])
                        p += w
                    }
                }
            }
        }
    }
}
