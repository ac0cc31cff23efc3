import Foundation
import Features

/// What a training batch holds: rows (Wide&Deep) or transitions (the RL families).
public enum BatchPayload: Sendable {
    case rows(FeatureBatch)
    case transitions(TransitionBatch)

    /// Samples in the batch (rows or transitions).
    public var count: Int {
        switch self { case .rows(let b): return b.count; case .transitions(let b): return b.count }
    }
    public var kind: FeatureBatchKind {
        switch self { case .rows: return .rows; case .transitions: return .transitions }
    }
}

/// A batch and where it came from.
public struct SourcedBatch: Sendable {
    public var payload: BatchPayload
    public var epoch: Int
    /// Stream positions *after* this batch (e.g. file line, Redis stream id), for the manifest.
    public var positions: [String: String]
    /// When the batch's oldest row was produced (ms since the epoch; 0 if unknown): freshness.
    public var producedAtMs: Int64
    /// The batch's number in its stream (1 = the first ever appended), when the source knows it:
    /// lets the trainer publish how far its lineage has trained for back-pressure.
    public var ordinal: Int64?

    public init(_ payload: BatchPayload, epoch: Int, positions: [String: String], producedAtMs: Int64 = 0, ordinal: Int64? = nil) {
        self.payload = payload
        self.epoch = epoch
        self.positions = positions
        self.producedAtMs = producedAtMs
        self.ordinal = ordinal
    }

    public var count: Int { payload.count }
    /// The rows of a `rows` batch.
    public var rows: FeatureBatch? { if case .rows(let b) = payload { return b } else { return nil } }
    /// The transitions of a `transitions` batch.
    public var transitions: TransitionBatch? { if case .transitions(let b) = payload { return b } else { return nil } }
}

/// What a source has for the trainer right now.
public enum SourcePoll: Sendable {
    case batch(SourcedBatch)
    /// Nothing yet; more may come (a live stream).
    case idle
    /// Nothing more will ever come (end of a file).
    case exhausted
}

/// Where a trainer's batches come from: a file, or Redis feature streams.
/// Owned and called by the trainer thread only.
public protocol BatchSource: AnyObject {
    /// Waits up to `timeout` seconds for the next batch.
    func poll(timeout: Double) throws -> SourcePoll
    /// Rows refused so far, by reason.
    var rejections: RejectionCounts { get }
    /// True while the source cannot reach where its batches come from (e.g. Redis restarting):
    /// time spent so is not idle time for `--until-idle`.
    var isWaitingForUpstream: Bool { get }
}

extension BatchSource {
    public var isWaitingForUpstream: Bool { false }
}

extension BatchSource {
    /// The next batch, or nil when the input is exhausted (blocking through idle periods).
    public func next() throws -> SourcedBatch? {
        while true {
            switch try poll(timeout: 1) {
            case .batch(let b): return b
            case .idle: continue
            case .exhausted: return nil
            }
        }
    }
}

/// Reads a Criteo file `epochs` times, parsing and encoding on a background thread into a small
/// bounded queue so parsing overlaps training and memory stays flat on big files.
public final class FileBatchSource: BatchSource, @unchecked Sendable {
    public let path: String
    private let output = ReaderOutput()
    private let lock = NSLock()
    private var _rejections = RejectionCounts(maxSamples: 50)
    /// Called (on the reader thread) for each refused row, e.g. to print it on stderr.
    public var onReject: (@Sendable (LineRejection) -> Void)?

    public init(path: String, encoder: FeatureEncoder, batchSize: Int, epochs: Int,
                parser: CriteoParser = CriteoParser(), onReject: (@Sendable (LineRejection) -> Void)? = nil) throws {
        self.path = path
        self.onReject = onReject
        _ = try LineReader(path: path, maxLineLength: parser.maxLineLength)  // fail fast on a missing file
        let output = self.output
        let thread = Thread { [weak self] in
            do {
                for epoch in 1...max(epochs, 1) {
                    let reader = try LineReader(path: path, maxLineLength: parser.maxLineLength)
                    var packer = BatchPacker(encoder: encoder, parser: parser, batchSize: batchSize)
                    var lastLine = 0
                    func emit(_ b: FeatureBatch) {
                        self?.record(packer.takeRejections())
                        output.put(SourcedBatch(.rows(b), epoch: epoch, positions: ["file:\(path)": "epoch \(epoch) line \(lastLine)"]))
                    }
                    try reader.forEachLine { line, number in
                        lastLine = number
                        if let b = packer.add(line: line, lineNumber: number) { emit(b) }
                    }
                    if let b = packer.flush() { emit(b) }
                    self?.record(packer.takeRejections())
                }
                output.finish()
            } catch {
                output.fail(error)
            }
        }
        thread.name = "streamrec-file-reader"
        thread.start()
    }

    private func record(_ rs: [LineRejection]) {
        guard !rs.isEmpty else { return }
        lock.lock(); for r in rs { _rejections.add(r) }; lock.unlock()
        if let onReject { for r in rs { onReject(r) } }
    }

    public var rejections: RejectionCounts { lock.lock(); defer { lock.unlock() }; return _rejections }

    /// A file never idles: this waits for the reader thread until a batch or the end.
    public func poll(timeout: Double) throws -> SourcePoll { try output.poll() }
}

/// Rank `rank` of `size` takes every `size`-th batch of another source (data-parallel training
/// from one file: each batch is trained exactly once, by one rank).
public final class StridedBatchSource: BatchSource {
    private let inner: BatchSource
    private let rank: Int, size: Int
    private var index = 0

    public init(_ inner: BatchSource, rank: Int, size: Int) {
        precondition(size > 0 && rank >= 0 && rank < size)
        self.inner = inner
        self.rank = rank
        self.size = size
    }

    public var rejections: RejectionCounts { inner.rejections }

    public func poll(timeout: Double) throws -> SourcePoll {
        while true {
            switch try inner.poll(timeout: timeout) {
            case .batch(let b):
                defer { index += 1 }
                if index % size == rank { return .batch(b) }
            case .idle: return .idle
            case .exhausted: return .exhausted
            }
        }
    }
}

/// What a file reader's thread hands the trainer: batches through a small bounded queue (so
/// reading overlaps training and memory stays flat), then the end of the input or an error.
final class ReaderOutput: @unchecked Sendable {
    private let queue = BoundedQueue<Result<SourcedBatch?, Error>>(capacity: 4)
    /// Read by the trainer thread only.
    private var finished = false

    func put(_ batch: SourcedBatch) { queue.put(.success(batch)) }
    func finish() { queue.put(.success(nil)) }
    func fail(_ error: Error) { queue.put(.failure(error)) }

    /// A file never idles: waits for the reader thread until a batch or the end.
    func poll() throws -> SourcePoll {
        if finished { return .exhausted }
        switch queue.take() {
        case .success(let b?): return .batch(b)
        case .success(nil): finished = true; return .exhausted
        case .failure(let e): finished = true; throw e
        }
    }
}

/// A blocking FIFO with a fixed capacity: `put` waits while full, `take` while empty.
public final class BoundedQueue<Element>: @unchecked Sendable {
    private var items: [Element] = []
    private let capacity: Int
    private let condition = NSCondition()

    public init(capacity: Int) { self.capacity = max(capacity, 1) }

    public func put(_ e: Element) {
        condition.lock()
        while items.count >= capacity { condition.wait() }
        items.append(e)
        condition.broadcast()
        condition.unlock()
    }

    public func take() -> Element {
        condition.lock()
        while items.isEmpty { condition.wait() }
        let e = items.removeFirst()
        condition.broadcast()
        condition.unlock()
        return e
    }

    public var count: Int { condition.lock(); defer { condition.unlock() }; return items.count }
}
