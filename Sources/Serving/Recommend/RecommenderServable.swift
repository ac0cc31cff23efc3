// The RL families on the server: one loaded version of any kind in `RecommenderCheckpoints.kinds`
// (never a family by name), reached through the `NextItemScorer` seam — the scores training and
// `eval` rank by — and the keys of its ids (`BehaviorKeys`), so requests and answers speak in item
// and user keys.
//
// A scorer keeps one workspace and is not safe from two threads at once, so calls are serialised
// by an `AsyncExclusive`: a request waiting for the scorer is suspended, not blocking a thread of
// the cooperative pool. A call scores at most `chunk` users, which bounds the scorer's
// [users × items] buffers (allocated once, by the warm-up, off the request path).
import Foundation
import Synchronization
import Checkpoint
import Features
import Models

/// An immutable, verified RL version that serves `/v1/recommend`.
///
/// Thread safety: every method may be called from any task concurrently; scorer calls take turns.
///
/// ```swift
/// let served = try RecommenderServable.load(directory: dir)
/// let scores = await served.scores(users: [id], histories: served.state(history: recent))
/// ```
public final class RecommenderServable: ServableModel {
    public let info: ServableInfo
    /// The keys of the model's user and item ids (the checkpoint's `users.keys`, `items.keys`).
    public let keys: BehaviorKeys
    /// H: items in a state.
    public let historyLength: Int
    /// Columns of the scores: item ids 0 ..< itemCount.
    public let itemCount: Int
    /// `recommendable[id]`: the item has a column, a key in this checkpoint, and is neither
    /// padding (0) nor OOV (1). Nothing else is ever recommended.
    let recommendable: [Bool]
    /// The ids below `itemCount` that are not recommendable (0, 1, ids without a key): masked in
    /// every row before selection.
    let unrecommendable: [Int32]
    /// Most users per scorer call.
    let chunk: Int
    /// Said once when the version is loaded (the watcher logs them).
    public let loadNotes: [String]
    private let scorer: any NextItemScorer
    private let exclusive = AsyncExclusive()

    init(info: ServableInfo, keys: BehaviorKeys, scorer: any NextItemScorer, recommendable: [Bool], chunk: Int, notes: [String]) {
        self.info = info
        self.keys = keys
        self.scorer = scorer
        historyLength = scorer.historyLength
        itemCount = scorer.itemCount
        self.recommendable = recommendable
        unrecommendable = recommendable.indices.filter { !recommendable[$0] }.map { Int32($0) }
        self.chunk = chunk
        loadNotes = notes
    }

    /// The scorer's memory is given back off the request path, as Wide&Deep's is.
    deinit {
        BackgroundRelease.release([scorer])
    }

    /// Most floats in one scorer call's [users × items] output (per buffer of the scorer's workspace).
    static let chunkFloats = 1 << 21

    /// Verifies (every file's sha256 and size, structure, the tensors against the config) and
    /// loads the RL checkpoint at `directory` through `RecommenderCheckpoints`, then scores an
    /// empty state through the request path: a version whose scores are not finite is refused.
    /// Slow: call it off the request path.
    public static func load(directory: URL) throws -> RecommenderServable {
        let start = ContinuousClock.now
        let loaded = try RecommenderCheckpoints.load(directory, verify: true)
        let scorer = loaded.scorer
        let H = scorer.historyLength, N = scorer.itemCount
        guard H > 0, N >= 2 else {
            throw CheckpointLoadError("checkpoint \(directory.path): the model has history length \(H) and \(N) item columns")
        }
        var recommendable = [Bool](repeating: false, count: N)
        var known = 0
        for id in 2..<N where loaded.keys.items.key(Int32(id)) != nil {
            recommendable[id] = true
            known += 1
        }
        let chunk = max(1, min(32, chunkFloats / N))
        // Warm-up through the request path, with the largest call a request makes: the scorer's
        // workspace is allocated here, on the loader's thread.
        let s = scorer.scores(users: [Int32](repeating: 0, count: chunk), histories: [Int32](repeating: TransitionBatch.paddingItem, count: chunk * H))
        guard s.count == chunk * N else {
            throw CheckpointLoadError("checkpoint \(directory.path): warm-up gave \(s.count) scores for \(chunk) states of \(N) items; refusing it")
        }
        if let bad = (0..<N).first(where: { recommendable[$0] && !s[$0].isFinite }) {
            throw CheckpointLoadError("checkpoint \(directory.path): warm-up scores of an empty state are not finite (item id \(bad): \(s[bad])); refusing it")
        }
        var notes: [String] = []
        if known == 0 {
            notes.append("the model knows no item keys (no items.keys, or empty): /v1/recommend can only answer popular items")
        }
        if loaded.manifest.streamPositions.keys.contains(where: { $0.hasPrefix("file:") }) {
            notes.append("the model was trained from a file: its ids are the file reader's, and the stateful "
                         + "/v1/recommend reads item ids from the feature store — they agree only if the feature store assigned ids "
                         + "in the same order; train with --source redis, or use the stateless form (item keys)")
        }
        let info = ServableInfo(manifest: loaded.manifest, directory: directory, loadSeconds: (ContinuousClock.now - start).seconds,
                                modelFileBytes: loaded.manifest.files[CheckpointStore.modelFileName]?.bytes ?? 0)
        return RecommenderServable(info: info, keys: loaded.keys, scorer: scorer, recommendable: recommendable, chunk: chunk, notes: notes)
    }

    /// The state a policy sees for the user's next action, built as training builds the state of
    /// a transition (`UserState.stateBeforeLast`, `TransitionRule`): the last H items, oldest
    /// first, padded in front with 0. For a user state that is `UserState.recent(H)` — the items
    /// before the next event, which will be the transition's state once that event arrives.
    public func state(history: some Collection<Int32>) -> [Int32] {
        let H = historyLength
        var out = [Int32](repeating: TransitionBatch.paddingItem, count: max(0, H - history.count))
        out.append(contentsOf: history.suffix(H))
        return out
    }

    /// Row-major [users.count × itemCount] scores (`NextItemScorer.scores`), `chunk` users per
    /// scorer call, the calls taking turns with other requests' without blocking a thread.
    public func scores(users: [Int32], histories: [Int32]) async -> [Float] {
        let B = users.count, H = historyLength, N = itemCount
        precondition(histories.count == B * H, "histories must be \(B) × \(H) item ids")  // built by this module, not input
        if B <= chunk {
            return await exclusive.run { scorer.scores(users: users, histories: histories) }
        }
        var out: [Float] = []
        out.reserveCapacity(B * N)
        var start = 0
        while start < B {
            let end = min(B, start + chunk)
            let u = Array(users[start..<end]), h = Array(histories[(start * H)..<(end * H)])
            out.append(contentsOf: await exclusive.run { scorer.scores(users: u, histories: h) })
            start = end
        }
        return out
    }

    /// The `n` best items of row `row` of `scores` ([rows × itemCount], as `scores(users:histories:)`
    /// returns them): recommendable, not in `masked`, finite; by score descending, equal scores by
    /// the lower id (as `eval` ranks). At most `n`, fewer when fewer items qualify. Masks by
    /// writing −∞ into the row (the caller's copy), so the selection is one pass over floats.
    func top(_ scores: inout [Float], row: Int, n: Int, masked: [Int32]) -> [(id: Int32, score: Float)] {
        let N = itemCount, base = row * N
        scores.withUnsafeMutableBufferPointer { s in
            for id in unrecommendable { s[base + Int(id)] = -.infinity }
            for id in masked where id >= 0 && Int(id) < N { s[base + Int(id)] = -.infinity }
        }
        return TopItems.select(scores[base..<(base + N)], n: n)
    }
}

/// Top-n selection with a bounded min-heap: O(items · log n), most items rejected by one compare.
enum TopItems {
    /// The `n` best ids j of `row` (ids are offsets from `row.startIndex`) with a finite score,
    /// best first: higher score, then lower id. Callers exclude an item by scoring it −∞.
    static func select(_ row: ArraySlice<Float>, n: Int) -> [(id: Int32, score: Float)] {
        guard n > 0 else { return [] }
        // heap[0] is the worst kept: min-heap by "better".
        var heap: [(id: Int32, score: Float)] = []
        heap.reserveCapacity(n)
        @inline(__always) func better(_ a: (id: Int32, score: Float), _ b: (id: Int32, score: Float)) -> Bool {
            a.score > b.score || (a.score == b.score && a.id < b.id)
        }
        func siftUp(_ i: Int) {
            var c = i
            while c > 0 {
                let p = (c - 1) / 2
                guard better(heap[p], heap[c]) else { break }
                heap.swapAt(p, c)
                c = p
            }
        }
        func siftDown(_ i: Int) {
            var p = i
            while true {
                let l = 2 * p + 1, r = l + 1
                var worst = p
                if l < heap.count && better(heap[worst], heap[l]) { worst = l }
                if r < heap.count && better(heap[worst], heap[r]) { worst = r }
                if worst == p { return }
                heap.swapAt(p, worst)
                p = worst
            }
        }
        row.withUnsafeBufferPointer { r in
            for j in 0..<r.count {
                let s = r[j]
                guard s.isFinite else { continue }
                // Full heap: ids ascend, so an equal score never beats the kept one.
                if heap.count == n && s <= heap[0].score { continue }
                let candidate = (id: Int32(j), score: s)
                if heap.count < n {
                    heap.append(candidate)
                    siftUp(heap.count - 1)
                } else {
                    heap[0] = candidate
                    siftDown(0)
                }
            }
        }
        return heap.sorted(by: better)
    }
}

/// Exclusive use of something two threads must not use at once, awaited without blocking a
/// thread: a caller that finds it busy is suspended and resumed, in arrival order, when it is
/// handed over. Safe from any task.
final class AsyncExclusive: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }
    private let state = Mutex(State())

    func run<T>(_ body: () throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try body()
    }

    private func acquire() async {
        if state.withLock({ s in
            if s.busy { return false }
            s.busy = true
            return true
        }) { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if !s.busy { s.busy = true; return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.head < s.waiters.count else {
                s.busy = false
                s.waiters.removeAll(keepingCapacity: true)
                s.head = 0
                return nil
            }
            // Handed over: `busy` stays true for the waiter.
            let c = s.waiters[s.head]
            s.head += 1
            return c
        }
        next?.resume()
    }
}

/// The RL families as a `ServableFamily`: every kind `RecommenderCheckpoints` loads.
public struct RecommenderServing: ServableFamily {
    public let name = "recommender"
    public var kinds: [String] { RecommenderCheckpoints.kinds }
    public var routes: [ServableRoute] { [ServableRoute(.post, "/v1/recommend", handle: recommend)] }

    public init() {}

    public func load(_ dir: URL, manifest: CheckpointManifest, previous: (any ServableModel)?,
                     options: ServableLoadOptions) throws -> any ServableModel {
        try RecommenderServable.load(directory: dir)
    }
}
