// Cluster: the one Swift funnel over Open MPI.
//
// Purpose and limits
//   * Everything a data-parallel trainer with dynamic join needs: init/finalize, a world
//     communicator, barrier, allreduce (fused Float buffers and scalars), broadcast,
//     allgather/allgatherv, and the port/accept/connect/merge calls used to admit a worker
//     that starts after `mpirun`.
//   * No C pointer or `MPI_Comm` leaks out: communicators are `Communicator` values.
//   * Every MPI return code goes through `check(_:_:)`, which throws `MPIError` with the text
//     from `MPI_Error_string`. `MPI_ERRORS_RETURN` is installed on every communicator this
//     module hands out, so MPI reports errors instead of aborting the job.
//
// Threading rule
//   MPI is owned by ONE thread: the thread that called `MPI.initialize`. With the default
//   thread level (`.funneled`) every other MPI call must come from that same thread; a
//   precondition enforces it. Swift concurrency may move a task between threads, so a
//   trainer that uses MPI from async code must run its MPI calls on a dedicated `Thread`
//   (or request `.serialized`/`.multiple` and take over the serialization itself).

import CMPI
import Foundation

// MARK: - Errors

/// An MPI call failed. `code` is the MPI error code, `errorClass` its class
/// (`MPI_Error_class`), `message` the library's own text.
public struct MPIError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let code: Int32
    public let errorClass: Int32
    public let message: String

    public var description: String {
        "MPI error in \(operation): \(message) (code \(code), class \(errorClass))"
    }

    /// Errors raised by this wrapper itself (bad arguments, wrong state), not by MPI.
    static func usage(_ operation: String, _ message: String) -> MPIError {
        MPIError(operation: operation, code: -1, errorClass: -1, message: message)
    }
}

/// The funnel: every MPI return code passes through here.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(MPIError) {
    if rc == streamrec_mpi_success() { return }
    throw makeError(rc, operation())
}

private func makeError(_ rc: Int32, _ operation: String) -> MPIError {
    var buffer = [CChar](repeating: 0, count: Int(streamrec_mpi_max_error_string()) + 1)
    var length: Int32 = 0
    var errorClass: Int32 = -1
    var text = "unknown MPI error"
    if MPI_Error_string(rc, &buffer, &length) == streamrec_mpi_success() {
        text = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    _ = MPI_Error_class(rc, &errorClass)
    return MPIError(operation: operation, code: rc, errorClass: errorClass, message: text)
}

// MARK: - Process-wide state

/// MPI thread-support levels (`MPI_THREAD_*`).
public enum MPIThreadLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case single = 0, funneled, serialized, multiple

    var cValue: Int32 {
        switch self {
        case .single: streamrec_mpi_thread_single()
        case .funneled: streamrec_mpi_thread_funneled()
        case .serialized: streamrec_mpi_thread_serialized()
        case .multiple: streamrec_mpi_thread_multiple()
        }
    }

    init(cValue: Int32) {
        switch cValue {
        case streamrec_mpi_thread_multiple(): self = .multiple
        case streamrec_mpi_thread_serialized(): self = .serialized
        case streamrec_mpi_thread_funneled(): self = .funneled
        default: self = .single
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { ["single", "funneled", "serialized", "multiple"][rawValue] }
}

/// Reduction operators for scalar allreduce.
public enum MPIReduceOp: Sendable {
    case sum, max, min
    var handle: MPI_Op {
        switch self {
        case .sum: streamrec_mpi_sum()
        case .max: streamrec_mpi_max()
        case .min: streamrec_mpi_min()
        }
    }
}

/// Process-wide MPI lifecycle. `initialize` and `finalize` each run at most once per process
/// (an MPI rule); see the file header for the threading rule.
public enum MPI {
    private struct State {
        var initialized = false
        var finalized = false
        var provided: MPIThreadLevel = .single
        var owner: pthread_t? = nil
        /// What `abortJob` aborts when set (see `setJobCommunicator`).
        var job: Communicator? = nil
    }
    private static let lock = NSLock()
    nonisolated(unsafe) private static var state = State()

    /// Initializes MPI (`MPI_Init_thread`) and returns the thread level MPI provided, which may
    /// be lower than `required`. Calling it again returns the recorded level. The calling
    /// thread becomes the MPI owner thread.
    @discardableResult
    public static func initialize(required: MPIThreadLevel = .funneled) throws(MPIError) -> MPIThreadLevel {
        lock.lock(); defer { lock.unlock() }
        if state.initialized { return state.provided }
        if state.finalized { throw .usage("MPI_Init_thread", "MPI was already finalized in this process; it cannot be restarted") }
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, required.cValue, &provided), "MPI_Init_thread")
        state.initialized = true
        state.provided = MPIThreadLevel(cValue: provided)
        state.owner = pthread_self()
        // Errors not tied to a communicator (open_port, …) go to MPI_COMM_WORLD's handler.
        try check(MPI_Comm_set_errhandler(streamrec_mpi_comm_world(), streamrec_mpi_errors_return()),
                  "MPI_Comm_set_errhandler(MPI_COMM_WORLD)")
        try check(MPI_Comm_set_errhandler(streamrec_mpi_comm_self(), streamrec_mpi_errors_return()),
                  "MPI_Comm_set_errhandler(MPI_COMM_SELF)")
        return state.provided
    }

    /// Finalizes MPI (`MPI_Finalize`). Safe to call more than once; only the first call acts.
    /// All communicators except `world` and `self` should be freed first.
    public static func finalize() throws(MPIError) {
        lock.lock(); defer { lock.unlock() }
        guard state.initialized, !state.finalized else { return }
        assertOwnerThread()
        state.finalized = true
        state.initialized = false
        try check(MPI_Finalize(), "MPI_Finalize")
    }

    /// True between `initialize` and `finalize`.
    public static var isInitialized: Bool { lock.withLock { state.initialized } }

    /// The thread level MPI provided at `initialize` (`.single` before that).
    public static var providedThreadLevel: MPIThreadLevel { lock.withLock { state.provided } }

    /// `MPI_COMM_WORLD`, with `MPI_ERRORS_RETURN` installed.
    public static func world() throws(MPIError) -> Communicator {
        try requireInitialized("MPI_COMM_WORLD")
        return try Communicator(wrapping: streamrec_mpi_comm_world(), owned: false)
    }

    /// `MPI_COMM_SELF`, with `MPI_ERRORS_RETURN` installed.
    public static func selfCommunicator() throws(MPIError) -> Communicator {
        try requireInitialized("MPI_COMM_SELF")
        return try Communicator(wrapping: streamrec_mpi_comm_self(), owned: false)
    }

    /// Opens a port (`MPI_Open_port`) that a joining process can `connect` to. Publish the
    /// returned string (e.g. in Redis) and pass it to `Communicator.accept(port:root:)`.
    public static func openPort() throws(MPIError) -> String {
        try requireInitialized("MPI_Open_port")
        var buffer = [CChar](repeating: 0, count: Int(streamrec_mpi_max_port_name()) + 1)
        try check(MPI_Open_port(streamrec_mpi_info_null(), &buffer), "MPI_Open_port")
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Closes a port opened by `openPort` (`MPI_Close_port`).
    public static func closePort(_ port: String) throws(MPIError) {
        try requireInitialized("MPI_Close_port")
        var buffer = Array(port.utf8CString)
        try check(MPI_Close_port(&buffer), "MPI_Close_port")
    }

    /// Wall-clock seconds (`MPI_Wtime`).
    public static func wallTime() -> Double { MPI_Wtime() }

    /// Aborts every process of `communicator`'s job (`MPI_Abort`). Use only when a rank cannot
    /// continue and the others would otherwise hang in a collective.
    public static func abort(_ communicator: Communicator, code: Int32) -> Never {
        _ = MPI_Abort(communicator.handle, code)
        fatalError("MPI_Abort returned")
    }

    /// Records the communicator that spans the whole job (after a dynamic join it joins two
    /// `mpirun` jobs; `MPI_COMM_WORLD` would only reach this process's own).
    public static func setJobCommunicator(_ communicator: Communicator) { lock.withLock { state.job = communicator } }

    /// Aborts the whole job: the communicator given to `setJobCommunicator`, else `MPI_COMM_WORLD`.
    public static func abortJob(code: Int32) -> Never {
        if let job = lock.withLock({ state.job }) { abort(job, code: code) }
        _ = MPI_Abort(streamrec_mpi_comm_world(), code)
        fatalError("MPI_Abort returned")
    }

    static func requireInitialized(_ operation: String) throws(MPIError) {
        let ok = lock.withLock { state.initialized }
        if !ok { throw .usage(operation, "MPI is not initialized; call MPI.initialize() first") }
        assertOwnerThread()
    }

    /// Enforces the threading rule for `.single`/`.funneled`.
    static func assertOwnerThread() {
        let (provided, owner) = (state.provided, state.owner)
        guard provided < .serialized, let owner else { return }
        precondition(pthread_equal(owner, pthread_self()) != 0,
                     "MPI is owned by the thread that called MPI.initialize(); this call came from another thread")
    }
}

// MARK: - Communicator

/// A communicator (`MPI_Comm`) with its rank and size. A value type; copies refer to the same
/// MPI communicator. Communicators this module creates (`duplicate`, `split`, `accept`,
/// `connect`, `merge`) must be released with `free()`; `world` must not be.
///
/// All methods are collective unless stated otherwise and must be called from the MPI owner
/// thread (see the file header). `@unchecked Sendable` only so a value can be stored in
/// Sendable state; using it off the owner thread is a precondition failure.
public struct Communicator: @unchecked Sendable {
    let handle: MPI_Comm
    let owned: Bool
    /// This process's rank in the (local group of the) communicator.
    public let rank: Int
    /// Number of processes in the (local group of the) communicator.
    public let size: Int
    /// For an intercommunicator (result of `accept`/`connect`): size of the remote group.
    public let remoteSize: Int?

    init(wrapping handle: MPI_Comm, owned: Bool) throws(MPIError) {
        try check(MPI_Comm_set_errhandler(handle, streamrec_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0, inter: Int32 = 0
        try check(MPI_Comm_rank(handle, &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(handle, &s), "MPI_Comm_size")
        try check(MPI_Comm_test_inter(handle, &inter), "MPI_Comm_test_inter")
        var remote: Int? = nil
        if inter != 0 {
            var rs: Int32 = 0
            try check(MPI_Comm_remote_size(handle, &rs), "MPI_Comm_remote_size")
            remote = Int(rs)
        }
        self.handle = handle
        self.owned = owned
        self.rank = Int(r)
        self.size = Int(s)
        self.remoteSize = remote
    }

    /// True for an intercommunicator (two groups joined by accept/connect).
    public var isIntercommunicator: Bool { remoteSize != nil }

    /// MPI_COMM_WORLD or MPI_COMM_SELF (cannot be freed or disconnected).
    public var isPredefined: Bool { !owned }

    private func precheck(_ operation: String) throws(MPIError) {
        try MPI.requireInitialized(operation)
    }

    private func checkRoot(_ root: Int, _ operation: String) throws(MPIError) {
        if root < 0 || root >= size { throw .usage(operation, "root \(root) is outside 0..<\(size)") }
    }

    // MARK: Synchronization

    /// `MPI_Barrier`.
    public func barrier() throws(MPIError) {
        try precheck("MPI_Barrier")
        try check(MPI_Barrier(handle), "MPI_Barrier")
    }

    // MARK: Allreduce

    /// Sums `buffer` element-wise across all ranks, in place (`MPI_Allreduce` with
    /// `MPI_IN_PLACE`, `MPI_FLOAT`, `MPI_SUM`). Every rank must pass the same count.
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(MPIError) {
        try precheck("MPI_Allreduce")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard buffer.count <= Int(Int32.max) else { throw .usage("MPI_Allreduce", "count \(buffer.count) exceeds Int32") }
        try check(MPI_Allreduce(streamrec_mpi_in_place(), base, Int32(buffer.count),
                                streamrec_mpi_float(), streamrec_mpi_sum(), handle),
                  "MPI_Allreduce(float, sum, count \(buffer.count))")
    }

    /// Array convenience for `allreduceSum(_: UnsafeMutableBufferPointer<Float>)`.
    public func allreduceSum(_ values: inout [Float]) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (p) throws(MPIError) in try allreduceSum(p) }
    }

    /// Reduces one `Int64` across all ranks; every rank gets the result.
    public func allreduce(_ value: Int64, _ op: MPIReduceOp = .sum) throws(MPIError) -> Int64 {
        try precheck("MPI_Allreduce")
        var v = value
        try check(MPI_Allreduce(streamrec_mpi_in_place(), &v, 1, streamrec_mpi_int64_t(), op.handle, handle),
                  "MPI_Allreduce(int64)")
        return v
    }

    /// Reduces one `Double` across all ranks; every rank gets the result.
    public func allreduce(_ value: Double, _ op: MPIReduceOp = .sum) throws(MPIError) -> Double {
        try precheck("MPI_Allreduce")
        var v = value
        try check(MPI_Allreduce(streamrec_mpi_in_place(), &v, 1, streamrec_mpi_double(), op.handle, handle),
                  "MPI_Allreduce(double)")
        return v
    }

    // MARK: Broadcast

    /// Broadcasts `bytes` from `root`; other ranks' argument is ignored and the root's bytes
    /// are returned on every rank (length is sent first, so lengths need not match).
    public func broadcast(bytes: [UInt8], root: Int) throws(MPIError) -> [UInt8] {
        try precheck("MPI_Bcast")
        try checkRoot(root, "MPI_Bcast")
        var count = Int64(rank == root ? bytes.count : 0)
        try check(MPI_Bcast(&count, 1, streamrec_mpi_int64_t(), Int32(root), handle), "MPI_Bcast(length)")
        guard count > 0 else { return [] }
        guard count <= Int64(Int32.max) else { throw .usage("MPI_Bcast", "payload of \(count) bytes exceeds Int32") }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        let h = handle
        try out.withUnsafeMutableBufferPointer { (p) throws(MPIError) in
            try check(MPI_Bcast(p.baseAddress, Int32(count), streamrec_mpi_byte(), Int32(root), h), "MPI_Bcast(bytes)")
        }
        return out
    }

    /// Broadcasts `buffer` from `root` in place. Every rank must pass the same count.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws(MPIError) {
        try precheck("MPI_Bcast")
        try checkRoot(root, "MPI_Bcast")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard buffer.count <= Int(Int32.max) else { throw .usage("MPI_Bcast", "count \(buffer.count) exceeds Int32") }
        try check(MPI_Bcast(base, Int32(buffer.count), streamrec_mpi_float(), Int32(root), handle), "MPI_Bcast(float)")
    }

    /// Array convenience for `broadcast(_: UnsafeMutableBufferPointer<Float>, root:)`.
    public func broadcast(_ values: inout [Float], root: Int) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (p) throws(MPIError) in try broadcast(p, root: root) }
    }

    // MARK: Allgather

    /// Gathers one `Int32` from every rank; element `r` is rank `r`'s value.
    public func allgather(_ value: Int32) throws(MPIError) -> [Int32] {
        try precheck("MPI_Allgather")
        var send = value
        var out = [Int32](repeating: 0, count: size)
        let h = handle
        try out.withUnsafeMutableBufferPointer { (p) throws(MPIError) in
            try check(MPI_Allgather(&send, 1, streamrec_mpi_int32_t(), p.baseAddress, 1, streamrec_mpi_int32_t(), h),
                      "MPI_Allgather(int32)")
        }
        return out
    }

    /// Concatenates every rank's variable-length `Int32` array in rank order
    /// (`MPI_Allgather` of the counts, then `MPI_Allgatherv`).
    public func allgatherv(_ local: [Int32]) throws(MPIError) -> Gathered<Int32> {
        try gatherv(local, streamrec_mpi_int32_t(), "MPI_Allgatherv(int32)")
    }

    /// Concatenates every rank's variable-length `Float` array in rank order.
    public func allgatherv(_ local: [Float]) throws(MPIError) -> Gathered<Float> {
        try gatherv(local, streamrec_mpi_float(), "MPI_Allgatherv(float)")
    }

    /// Hot-path allgatherv when every rank already knows all counts (e.g. fixed layout):
    /// rank `r` contributes `counts[r]` floats from `local`; `output.count` must be the sum.
    public func allgatherv(_ local: UnsafeBufferPointer<Float>, counts: [Int32],
                           into output: UnsafeMutableBufferPointer<Float>) throws(MPIError) {
        try precheck("MPI_Allgatherv")
        guard counts.count == size else { throw .usage("MPI_Allgatherv", "counts has \(counts.count) entries for \(size) ranks") }
        guard Int(counts[rank]) == local.count else { throw .usage("MPI_Allgatherv", "local count \(local.count) != counts[\(rank)] = \(counts[rank])") }
        let displs = Self.displacements(counts)
        let total = counts.reduce(0) { $0 + Int($1) }
        guard output.count == total else { throw .usage("MPI_Allgatherv", "output holds \(output.count), counts sum to \(total)") }
        try check(MPI_Allgatherv(local.baseAddress, Int32(local.count), streamrec_mpi_float(),
                                 output.baseAddress, counts, displs, streamrec_mpi_float(), handle),
                  "MPI_Allgatherv(float)")
    }

    private func gatherv<T: BitwiseCopyable & Sendable>(_ local: [T], _ type: MPI_Datatype, _ operation: String) throws(MPIError) -> Gathered<T> {
        try precheck(operation)
        guard local.count <= Int(Int32.max) else { throw .usage(operation, "count \(local.count) exceeds Int32") }
        let counts = try allgather(Int32(local.count))
        let displs = Self.displacements(counts)
        let total = counts.reduce(0) { $0 + Int($1) }
        guard total <= Int(Int32.max) else { throw .usage(operation, "total \(total) exceeds Int32") }
        var out = [T](unsafeUninitializedCapacity: total) { _, n in n = total }
        let h = handle
        try local.withUnsafeBufferPointer { (src) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (dst) throws(MPIError) in
                try check(MPI_Allgatherv(src.baseAddress, Int32(local.count), type,
                                         dst.baseAddress, counts, displs, type, h), operation)
            }
        }
        return Gathered(values: out, counts: counts.map { Int($0) })
    }

    static func displacements(_ counts: [Int32]) -> [Int32] {
        var d = [Int32](repeating: 0, count: counts.count)
        var acc: Int32 = 0
        for i in counts.indices { d[i] = acc; acc &+= counts[i] }
        return d
    }

    // MARK: New communicators

    /// `MPI_Comm_dup`: a private copy for one library/subsystem.
    public func duplicate() throws(MPIError) -> Communicator {
        try precheck("MPI_Comm_dup")
        var out = streamrec_mpi_comm_null()
        try check(MPI_Comm_dup(handle, &out), "MPI_Comm_dup")
        return try Communicator(wrapping: out!, owned: true)
    }

    /// `MPI_Comm_split`: ranks with the same `color` form a communicator, ordered by `key`.
    public func split(color: Int32, key: Int32) throws(MPIError) -> Communicator {
        try precheck("MPI_Comm_split")
        var out = streamrec_mpi_comm_null()
        try check(MPI_Comm_split(handle, color, key, &out), "MPI_Comm_split")
        return try Communicator(wrapping: out!, owned: true)
    }

    /// Waits for a process to `connect` to `port` (`MPI_Comm_accept`, collective over this
    /// communicator; `port` only matters on `root`). Returns the intercommunicator.
    public func accept(port: String, root: Int = 0) throws(MPIError) -> Communicator {
        try precheck("MPI_Comm_accept")
        try checkRoot(root, "MPI_Comm_accept")
        var name = Array(port.utf8CString)
        var out = streamrec_mpi_comm_null()
        try check(MPI_Comm_accept(&name, streamrec_mpi_info_null(), Int32(root), handle, &out), "MPI_Comm_accept(\(port))")
        return try Communicator(wrapping: out!, owned: true)
    }

    /// Connects to a process group that called `accept` on `port` (`MPI_Comm_connect`,
    /// collective over this communicator). Returns the intercommunicator.
    public func connect(port: String, root: Int = 0) throws(MPIError) -> Communicator {
        try precheck("MPI_Comm_connect")
        try checkRoot(root, "MPI_Comm_connect")
        var name = Array(port.utf8CString)
        var out = streamrec_mpi_comm_null()
        try check(MPI_Comm_connect(&name, streamrec_mpi_info_null(), Int32(root), handle, &out), "MPI_Comm_connect(\(port))")
        return try Communicator(wrapping: out!, owned: true)
    }

    /// Merges an intercommunicator into one intracommunicator (`MPI_Intercomm_merge`).
    /// The group passing `high: false` gets the low ranks (existing trainers pass `false`,
    /// the joining worker `true`, so existing ranks keep their numbers).
    public func merge(high: Bool) throws(MPIError) -> Communicator {
        try precheck("MPI_Intercomm_merge")
        guard isIntercommunicator else { throw .usage("MPI_Intercomm_merge", "not an intercommunicator") }
        var out = streamrec_mpi_comm_null()
        try check(MPI_Intercomm_merge(handle, high ? 1 : 0, &out), "MPI_Intercomm_merge")
        return try Communicator(wrapping: out!, owned: true)
    }

    /// `MPI_Comm_disconnect`: collective over the communicator; waits for pending traffic and
    /// severs the connection between the groups (needed before a dynamically joined process
    /// can finalize and exit on its own).
    public func disconnect() throws(MPIError) {
        try precheck("MPI_Comm_disconnect")
        guard owned else { throw .usage("MPI_Comm_disconnect", "MPI_COMM_WORLD and MPI_COMM_SELF cannot be disconnected") }
        var h: MPI_Comm? = handle
        try check(MPI_Comm_disconnect(&h), "MPI_Comm_disconnect")
    }

    /// `MPI_Comm_split` where this rank may opt out (`color` nil → MPI_UNDEFINED): returns nil
    /// for the ranks that opted out.
    public func split(color: Int32?, key: Int32) throws(MPIError) -> Communicator? {
        try precheck("MPI_Comm_split")
        var out = streamrec_mpi_comm_null()
        try check(MPI_Comm_split(handle, color ?? streamrec_mpi_undefined(), key, &out), "MPI_Comm_split")
        if out == streamrec_mpi_comm_null() { return nil }
        return try Communicator(wrapping: out!, owned: true)
    }

    /// Releases a communicator created by this module (`MPI_Comm_free`). Do not use the value
    /// (or its copies) afterwards. Freeing `world`/`self` is an error.
    public func free() throws(MPIError) {
        try precheck("MPI_Comm_free")
        guard owned else { throw .usage("MPI_Comm_free", "MPI_COMM_WORLD and MPI_COMM_SELF cannot be freed") }
        var h: MPI_Comm? = handle
        try check(MPI_Comm_free(&h), "MPI_Comm_free")
    }
}

/// Result of an allgatherv: all ranks' values in rank order, with per-rank counts.
public struct Gathered<T: Sendable>: Sendable {
    public let values: [T]
    public let counts: [Int]

    /// Offset of rank `r`'s part in `values`.
    public func offset(of rank: Int) -> Int { counts[..<rank].reduce(0, +) }

    /// Rank `r`'s part.
    public func part(_ rank: Int) -> ArraySlice<T> {
        let start = offset(of: rank)
        return values[start ..< start + counts[rank]]
    }
}
