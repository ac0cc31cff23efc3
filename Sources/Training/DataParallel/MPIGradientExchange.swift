import Cluster
import Models

/// Synchronous data parallelism over MPI.
///
/// Per step: one small allreduce agrees on what the step is (samples, who still has data, stop
/// and join requests); then, if any rank has samples, one allreduce over the fused dense
/// gradient buffer (with its sample count and loss sums) and two allgathervs for the sparse
/// rows (ids, then each id's deep row and wide weight packed together). Gathered lists are in
/// rank order on every rank, so `applyGradients` merges repeats identically everywhere and the
/// replicas stay bit-identical.
///
/// Threading: MPI belongs to the thread that initialised it (the trainer thread); call
/// everything here from that thread only.
public final class MPIGradientExchange: GradientExchange {
    public private(set) var communicator: Communicator
    /// Floats per deep embedding row (a model constant every rank knows).
    public let embeddingSize: Int
    private var packed: [Float] = []
    private var gathered: [Float] = []

    public init(communicator: Communicator, embeddingSize: Int) {
        self.communicator = communicator
        self.embeddingSize = embeddingSize
    }

    public var isCoordinator: Bool { communicator.rank == 0 }
    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }

    /// Replaces the communicator (after a join or a leave).
    public func reset(communicator: Communicator) { self.communicator = communicator }

    public func agree(_ local: StepSignals) throws -> StepSignals {
        var v = local.vector
        try communicator.allreduceSum(&v)
        return StepSignals(vector: v)
    }

    public func combine(_ grads: WideDeepGradients) throws {
        try communicator.allreduceSum(grads.dense.buffer)
        let ids = try communicator.allgatherv(grads.ids)
        // Every rank knows every rank's id count now, so the row payload needs no second count exchange.
        let width = embeddingSize
        packed.removeAll(keepingCapacity: true)
        packed.reserveCapacity(grads.ids.count * (width + 1))
        for u in 0..<grads.ids.count {
            packed.append(contentsOf: grads.deepRows[(u * width)..<((u + 1) * width)])
            packed.append(grads.wideRows[u])
        }
        let counts = ids.counts.map { Int32($0 * (width + 1)) }
        let total = ids.values.count * (width + 1)
        if gathered.count != total { gathered = [Float](repeating: 0, count: total) }
        try packed.withUnsafeBufferPointer { src in
            try gathered.withUnsafeMutableBufferPointer { dst in
                try communicator.allgatherv(src, counts: counts, into: dst)
            }
        }
        grads.ids = ids.values
        grads.deepRows.removeAll(keepingCapacity: true)
        grads.wideRows.removeAll(keepingCapacity: true)
        grads.deepRows.reserveCapacity(ids.values.count * width)
        for u in 0..<ids.values.count {
            let base = u * (width + 1)
            grads.deepRows.append(contentsOf: gathered[base..<(base + width)])
            grads.wideRows.append(gathered[base + width])
        }
    }
}
