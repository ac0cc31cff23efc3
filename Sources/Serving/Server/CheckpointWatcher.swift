// Hot reload: polls the checkpoints root's LATEST and, when it names a version that is not being
// served, loads and verifies it on a thread of its own (never on the request path) through
// `ServableLoader` (the manifest's kind picks the family), warms it up, then swaps it into the
// `ModelSlot`. One watcher for every model kind; a version of another kind than the one being
// served is refused like a corrupt one. A version that fails is remembered (by directory name and
// manifest modification time) so it is not retried in a loop, logged, counted, and the last good
// version keeps serving. A LATEST that is not a version name of this root (a path, `..`, garbage)
// and a version that resolves outside the root (a `step-*` symlink) are refused the same way.
#if canImport(Glibc)
import Logging
import Glibc
#endif
import Foundation
import Synchronization
import ServiceLifecycle
import Checkpoint

/// Watches a checkpoints root and keeps `slot` on the newest good version of the kind it serves.
///
/// Runs as a swift-service-lifecycle `Service` beside the HTTP server (`app.addServices`); tests
/// call `pollOnce()` directly.
///
/// ```swift
/// let watcher = CheckpointWatcher(root: dir, slot: slot, metrics: metrics, workspaceRows: 1000)
/// app.addServices(watcher)
/// ```
public final class CheckpointWatcher: Service, Sendable {
    public enum Outcome: Equatable, Sendable {
        /// LATEST names nothing yet (or the version being served, or one already refused).
        case unchanged
        case loaded(version: String)
        case rejected(version: String, reason: String)
    }

    public let root: URL
    public let pollInterval: Duration
    let slot: ModelSlot
    let metrics: ServingMetrics
    let workspaceRows: Int
    let logger: Logger
    private let refused = Mutex<Set<String>>([])
    private let polling = Mutex(false)

    public init(root: URL, slot: ModelSlot, metrics: ServingMetrics, workspaceRows: Int,
                pollInterval: Duration = .milliseconds(200),
                logger: Logger = Logger(label: "serve")) {
        self.root = root
        self.slot = slot
        self.metrics = metrics
        self.workspaceRows = workspaceRows
        self.pollInterval = pollInterval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                _ = await self.pollOnce()
                try? await Task.sleep(for: self.pollInterval)
            }
        }
    }

    enum Candidate {
        case nothing
        case version(URL)
        /// LATEST or the version it names is refused before loading; `key` identifies the attempt.
        case refused(key: String, reason: String, label: String)
    }

    /// The directory LATEST names (read directly, so a LATEST naming a broken or missing
    /// directory is noticed and refused); without LATEST, the store's newest readable version.
    func candidate() -> Candidate {
        let store = CheckpointStore(directory: root, keep: Int.max)
        do {
            if let dir = try store.latestVersion() { return .version(dir) }
            return store.latest().map { .version($0) } ?? .nothing
        } catch {
            let label: String
            switch error {
            case CheckpointError.outsideRoot: label = "outside_root"
            case CheckpointError.invalidLatest: label = "invalid_latest"
            default: label = "invalid_checkpoint"
            }
            // Rewriting LATEST (even with the same text) is a new attempt; polling again is not.
            let latest = root.appendingPathComponent(CheckpointStore.latestFileName).path
            let mtime = (try? FileManager.default.attributesOfItem(atPath: latest)[.modificationDate] as? Date)
                .map { String($0.timeIntervalSince1970) } ?? "absent"
            let reason = String(describing: error)
            return .refused(key: "LATEST@\(mtime): \(reason)", reason: reason, label: label)
        }
    }

    /// Identity of one attempt: the directory name and its manifest's modification time, so a
    /// version that is rewritten (fixed) is tried again but an unchanged bad one is not.
    func attemptKey(_ dir: URL) -> String {
        let manifest = dir.appendingPathComponent(CheckpointManifest.fileName).path
        let mtime = (try? FileManager.default.attributesOfItem(atPath: manifest)[.modificationDate] as? Date)
            .map { String($0.timeIntervalSince1970) } ?? "absent"
        return dir.lastPathComponent + "@" + mtime
    }

    /// One look at LATEST; loads and swaps if it names a new good version.
    public func pollOnce() async -> Outcome {
        // One poll at a time (the service loop and a test may both call this).
        guard polling.withLock({ busy in if busy { return false }; busy = true; return true }) else { return .unchanged }
        defer { polling.withLock { $0 = false } }
        let dir: URL
        switch candidate() {
        case .nothing:
            return .unchanged
        case .version(let url):
            dir = url
        case .refused(let key, let reason, let label):
            guard refused.withLock({ $0.insert(key).inserted }) else { return .unchanged }
            metrics.recordRejectedCheckpoint(reason: label)
            let kept = slot.current.map { "still serving \($0.version)" } ?? "no model loaded yet"
            logger.warning("refused LATEST: \(reason); \(kept). It will not be retried until LATEST changes.")
            return .rejected(version: CheckpointStore.latestFileName, reason: reason)
        }
        let version = dir.lastPathComponent
        if slot.current?.version == version { return .unchanged }
        let key = attemptKey(dir)
        if refused.withLock({ $0.contains(key) }) { return .unchanged }

        let options = ServableLoadOptions(workspaceRows: workspaceRows), previous = slot.current
        // nil: shutting down; the load is abandoned (it only reads) rather than waited for.
        guard let result: Result<any ServableModel, any Error> = await Self.offRequestPath({
            Result { try ServableLoader.load(directory: dir, previous: previous, options: options) }
        }) else { return .unchanged }
        switch result {
        case .success(let model):
            let old = slot.replace(with: model)
            metrics.recordReload(model: model)
            logger.info(.init(stringLiteral: "serving \(model.version) (\(model.kind), step \(model.step)) loaded in \(String(format: "%.3f", model.info.loadSeconds)) s"
                + (old.map { ", replacing \($0.version)" } ?? "")))
            // Once per lineage, not on every reload.
            let said = Set(old?.loadNotes ?? [])
            for note in model.loadNotes where !said.contains(note) { logger.info("note: \(note)") }
            return .loaded(version: version)
        case .failure(let error):
            refused.withLock { _ = $0.insert(key) }
            metrics.recordRejectedCheckpoint(reason: (error as? ServableLoadError)?.reason ?? "invalid_checkpoint")
            let kept = slot.current.map { "still serving \($0.version)" } ?? "no model loaded yet"
            logger.warning("refused checkpoint \(version): \(error); \(kept). It will not be retried until its manifest changes.")
            return .rejected(version: version, reason: String(describing: error))
        }
    }

    /// Runs `body` on a thread of its own so a load (hashing and copying the whole model)
    /// never occupies the threads that answer requests. Returns nil at once when the task is
    /// cancelled (shutdown), leaving the thread to finish and its result to be dropped, so a
    /// slow or stuck read never holds up SIGTERM.
    static func offRequestPath<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        let pending = PendingResult<T>()
        let job = OneShot(body)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<T?, Never>) in
                pending.set(cont)
                if Task.isCancelled { pending.resume(nil); return }
                let thread = Thread {
                    lowerThisThreadsPriority()
                    // `run` drops the body (and what it captured, e.g. the replaced version)
                    // before the waiting task resumes, so nothing outlives the swap.
                    pending.resume(job.run())
                }
                thread.name = "checkpoint-loader"
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onCancel: {
            pending.resume(nil)
        }
    }
}

/// A closure run at most once and released right after.
private final class OneShot<T: Sendable>: Sendable {
    private let body: Mutex<(@Sendable () -> T)?>
    init(_ body: @escaping @Sendable () -> T) { self.body = Mutex(body) }
    func run() -> T? {
        guard let f = body.withLock({ b -> (@Sendable () -> T)? in defer { b = nil }; return b }) else { return nil }
        return f()
    }
}

/// A continuation resumed exactly once, by whichever comes first: the result or cancellation.
private final class PendingResult<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T?, Never>?>(nil)

    func set(_ cont: CheckedContinuation<T?, Never>) { continuation.withLock { $0 = cont } }

    func resume(_ value: T?) {
        continuation.withLock { cont in
            cont?.resume(returning: value)
            cont = nil
        }
    }
}
