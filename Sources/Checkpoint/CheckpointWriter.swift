import Logging
import Foundation
import Checkpoint
#if canImport(Glibc)
import Glibc
#endif

/// What a checkpoint records besides a model family's tensors and files.
public struct CheckpointRecord: Sendable {
    public var step: Int
    public var samplesTrained: Int
    public var wallTimeSeconds: Double
    public var metrics: [String: Double]
    public var streamPositions: [String: String]
    /// When the newest trained batch was produced (its oldest event, ms since the epoch), if known.
    public var newestEventProducedMs: Int64?
    public init(step: Int, samplesTrained: Int, wallTimeSeconds: Double,
                metrics: [String: Double] = [:], streamPositions: [String: String] = [:], newestEventProducedMs: Int64? = nil) {
        self.newestEventProducedMs = newestEventProducedMs
        self.step = step
        self.samplesTrained = samplesTrained
        self.wallTimeSeconds = wallTimeSeconds
        self.metrics = metrics
        self.streamPositions = streamPositions
    }
}

/// An in-memory copy of everything one checkpoint version holds, taken between steps and written
/// from another thread while training goes on. Each model family provides its own (tensors,
/// config, sidecar files such as dictionaries); the store, the writer, retention, `ckpt` and
/// resume only see this seam and the manifest's `model_kind`.
public protocol CheckpointSnapshot: Sendable {
    var record: CheckpointRecord { get }
    /// Writes the snapshot as a new version in `store` (atomic; LATEST updated last).
    func write(to store: CheckpointStore) throws -> URL
}

/// A checkpoint that cannot be used, with every problem in the message.
public struct CheckpointLoadError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Writes checkpoint snapshots on a background thread so training stalls only for the
/// in-memory snapshot. At most one write is in flight: a new submit waits for the previous
/// write (the stall then shows in `lastStallSeconds`). Used by rank 0 only.
public final class CheckpointWriter: @unchecked Sendable {
    private let store: CheckpointStore
    private let queue = DispatchQueue(label: "streamrec.checkpoint-writer")
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var _lastError: Error?
    private var _written: [(url: URL, seconds: Double)] = []
    private let logger: Logger
    /// Called on the writer thread after each version is in place (step, directory).
    public var onWritten: (@Sendable (Int, URL) -> Void)?

    public init(store: CheckpointStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Queues a snapshot; returns after any previous write has finished.
    public func submit(_ snapshot: any CheckpointSnapshot) {
        group.wait()
        group.enter()
        queue.async { [self] in
            defer { group.leave() }
            lowerThisThreadsPriority()   // the step must not wait for the writer
            let start = Date()
            do {
                let url = try snapshot.write(to: store)
                let dt = Date().timeIntervalSince(start)
                lock.withLock { _written.append((url, dt)) }
                onWritten?(snapshot.record.step, url)
                logger.info(.init(stringLiteral: String(format: "checkpoint: step %d, samples %d → %@ (written in %.2fs)",
                           snapshot.record.step, snapshot.record.samplesTrained, url.path, dt)))
            } catch {
                lock.withLock { _lastError = error }
                logger.error("checkpoint: step \(snapshot.record.step) FAILED: \(error)")
            }
        }
    }

    /// Waits for the write in flight, if any; rethrows the first write error.
    public func finish() throws {
        group.wait()
        if let e = lock.withLock({ _lastError }) { throw e }
    }

    public var written: [(url: URL, seconds: Double)] { lock.withLock { _written } }

    /// True when no write is in flight.
    public var isIdle: Bool { group.wait(timeout: .now()) == .success }
}

/// Lowers the calling thread's priority (Linux per-thread nice 10, about a tenth of a core's share
/// when other threads want every core). Background work that copies or hashes a whole model — the
/// checkpoint writer, the server's loader — must not take CPU time from training steps or
/// requests on a machine with few cores, yet still finishes. No effect elsewhere.
public func lowerThisThreadsPriority() {
    #if canImport(Glibc)
    // On Linux the nice value is per thread and `who` 0 names the calling thread (setpriority(2), BUGS).
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
    #endif
}
