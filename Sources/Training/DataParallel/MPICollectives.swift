import Cluster

/// `Collectives` over an MPI communicator (synchronous data parallelism).
///
/// Threading: MPI belongs to the thread that initialised it (the trainer thread); call
/// everything here from that thread only.
public final class MPICollectives: Collectives {
    public private(set) var communicator: Communicator

    public init(communicator: Communicator) { self.communicator = communicator }

    public var isCoordinator: Bool { communicator.rank == 0 }
    public var participants: Int { communicator.size }
    public var rank: Int { communicator.rank }

    /// Replaces the communicator (after a join or a leave).
    public func reset(communicator: Communicator) { self.communicator = communicator }

    public func agree(_ local: StepSignals) throws -> StepSignals {
        var v = local.vector
        try communicator.allreduceSum(&v)
        return StepSignals(vector: v)
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try communicator.allreduceSum(buffer)
    }

    public func allgatherv(_ local: [Int32]) throws -> (values: [Int32], counts: [Int]) {
        let g = try communicator.allgatherv(local)
        return (g.values, g.counts)
    }

    public func allgatherv(_ local: UnsafeBufferPointer<Float>, counts: [Int32], into output: UnsafeMutableBufferPointer<Float>) throws {
        try communicator.allgatherv(local, counts: counts, into: output)
    }
}
