import Foundation
import Features

/// Behaviour events from a file (`user_behavior.csv`: `user,item,behavior,time`, FlinkRL/DBRL's
/// Tianchi format) as `transitions` batches, through the feature workers' per-user rule
/// (`TransitionRule`): a model trained from the file sees the transitions the streaming pipeline
/// emits for the same events in the same order. Ids are assigned at first sight in the streaming
/// id spaces (items from 2 — 0 pads a state, 1 is the item OOV id — users from 1). At the end of
/// the file every user's pending events are released (the last one done), users in the order of
/// their newest event. Batches hold exactly `batchSize` transitions (the last of each pass fewer). With `epochs` > 1 the
/// file is read again from fresh user states (`train.epochs`; batches carry their pass number). Refused lines are
/// counted by reason. Parsing runs on a background thread into a small bounded queue.
public final class BehaviorFileSource: BatchSource, @unchecked Sendable {
    public let path: String
    private let output = ReaderOutput()
    private let lock = NSLock()
    private var _rejections = RejectionCounts(maxSamples: 50)
    private var _items = BehaviorIdCache(), _users = BehaviorIdCache()
    private var _keys = BehaviorKeys()

    public static let firstItemId: Int32 = 2
    public static let firstUserId: Int32 = 1

    public init(path: String, rule: TransitionRule, batchSize: Int, epochs: Int = 1, parser: BehaviorParser = BehaviorParser(),
                onReject: (@Sendable (LineRejection) -> Void)? = nil) throws {
        self.path = path
        _ = try LineReader(path: path, maxLineLength: parser.maxLineLength)  // fail fast on a missing file
        let output = self.output
        let thread = Thread { [weak self] in
            guard let self else { output.finish(); return }
            do {
                for epoch in 1...max(epochs, 1) {
                    try self.read(rule: rule, batchSize: max(batchSize, 1), epoch: epoch, parser: parser, onReject: onReject)
                }
                output.finish()
            } catch {
                output.fail(error)
            }
        }
        thread.name = "streamrec-behaviour-reader"
        thread.start()
    }

    /// One pass over the file. Every pass starts every user's state afresh (the file's histories
    /// replay from their start); ids keep their first pass's values; rejections count once.
    private func read(rule: TransitionRule, batchSize: Int, epoch: Int, parser: BehaviorParser,
                      onReject: (@Sendable (LineRejection) -> Void)?) throws {
        let reader = try LineReader(path: path, maxLineLength: parser.maxLineLength)
        var states: [Int32: UserState] = [:]
        var nextItem = Self.firstItemId, nextUser = Self.firstUserId
        var out = rule.emptyBatch()
        var scratch: [Int32] = []
        var lastLine = 0
        // An event can emit several transitions (a session's end emits its whole queue).
        func flush(full: Bool = true) {
            while out.count >= (full ? batchSize : 1) {
                let batch: TransitionBatch
                if out.count > batchSize { batch = out.removeFirst(batchSize) } else { batch = out; out.removeAll() }
                output.put(SourcedBatch(.transitions(batch), epoch: epoch, positions: ["file:\(path)": "line \(lastLine)"]))
            }
        }
        func id(_ bytes: UnsafeRawBufferPointer, _ isItem: Bool) -> Int32 {
            lock.lock(); defer { lock.unlock() }
            if isItem {
                if let id = _items.id(of: bytes) { return id }
                _items.learn(bytes, id: nextItem)
                _keys.items.set(String(decoding: bytes, as: UTF8.self), id: nextItem)
                nextItem += 1; return nextItem - 1
            }
            if let id = _users.id(of: bytes) { return id }
            _users.learn(bytes, id: nextUser)
            _keys.users.set(String(decoding: bytes, as: UTF8.self), id: nextUser)
            nextUser += 1; return nextUser - 1
        }
        try reader.forEachLine { line, number in
            lastLine = number
            let e: BehaviorEvent
            do throws(RowRejection) { e = try parser.parse(line) } catch {
                guard epoch == 1 else { return }
                let r = LineRejection(line: number, rejection: error)
                lock.withLock { _rejections.add(r) }
                onReject?(r)
                return
            }
            let user = id(UnsafeRawBufferPointer(rebasing: line[e.user]), false)
            let item = id(UnsafeRawBufferPointer(rebasing: line[e.item]), true)
            rule.apply(user: user, item: item, behavior: e.behavior, time: e.time, to: &states[user, default: UserState()],
                       into: &out, scratch: &scratch)
            flush()
        }
        // The end of the input ends every pending episode, by the time of the user's newest event.
        let pending = states.compactMap { u, s in s.pending.last.map { (user: u, time: $0.time) } }
            .sorted { ($0.time, $0.user) < ($1.time, $1.user) }
        for p in pending {
            rule.release(user: p.user, &states[p.user]!, into: &out, scratch: &scratch)
            flush()
        }
        flush(full: false)
    }

    public var rejections: RejectionCounts { lock.withLock { _rejections } }

    /// The key of item `id` (nil when not seen yet).
    public func itemKey(_ id: Int32) -> String? { lock.withLock { _keys.items.key(id) } }
    /// The key of user `id` (nil when not seen yet).
    public func userKey(_ id: Int32) -> String? { lock.withLock { _keys.users.key(id) } }
    /// Every key read so far (the reader runs ahead of training: a superset of the trained ids').
    public var keys: BehaviorKeys { lock.withLock { _keys } }

    /// A file never idles: this waits for the reader thread until a batch or the end.
    public func poll(timeout: Double) throws -> SourcePoll { try output.poll() }
}
