// The collectives every model family's step uses. The trainer loop is the same for one process
// and for N MPI ranks; only this seam differs. Each call is made by every participant in the same
// order with compatible sizes, so replicas that start identical stay bit-identical.

/// Collective operations over the participants of a training job.
/// Threading: MPI belongs to the thread that initialised it; call from the trainer thread only.
public protocol Collectives: AnyObject {
    /// Whether this participant writes checkpoints and logs (rank 0).
    var isCoordinator: Bool { get }
    /// Participants in the job.
    var participants: Int { get }
    /// Sums step signals across participants (a small collective before each step).
    func agree(_ local: StepSignals) throws -> StepSignals
    /// Element-wise sum over participants, in place (one fused buffer per step).
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Every participant's ids concatenated in rank order, and each one's count.
    func allgatherv(_ local: [Int32]) throws -> (values: [Int32], counts: [Int])
    /// Every participant's floats concatenated in rank order into `output`, when each one's count
    /// is already known everywhere (`counts[r]` from rank r; `output.count` is their sum).
    func allgatherv(_ local: UnsafeBufferPointer<Float>, counts: [Int32], into output: UnsafeMutableBufferPointer<Float>) throws
}

/// A single process: every collective is the identity.
public final class LocalCollectives: Collectives {
    public init() {}
    public var isCoordinator: Bool { true }
    public var participants: Int { 1 }
    public func agree(_ local: StepSignals) throws -> StepSignals { local }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allgatherv(_ local: [Int32]) throws -> (values: [Int32], counts: [Int]) { (local, [local.count]) }
    public func allgatherv(_ local: UnsafeBufferPointer<Float>, counts: [Int32], into output: UnsafeMutableBufferPointer<Float>) throws {
        _ = output.initialize(from: local)
    }
}
