import Foundation
import Features
import Models

// `streamrec eval` for the RL families: next-item NDCG@10 and HR@10 of a checkpoint on held-out
// behaviour events, and of the popularity baseline on the same events. The definition (issue 11):
// for each held-out event, rank every item except those the user consumed before it by the
// model's score given the user's state before the event; NDCG@10 = 1/log2(1 + rank) when the
// true item's rank ≤ 10, else 0; HR@10 = 1 when rank ≤ 10.
//
// A user's state is built as training builds it (`UserState.consume`: the last H items of every
// behaviour, oldest first, padded in front) from the --history events, then from the earlier
// held-out events. Held-out events come after their user's history events. A true item the model
// has never seen cannot be ranked: it counts as a miss (and in `unknown_items`); so does a true
// item the user consumed before (it is excluded from the ranking, as in `streamrec gen
// behavior`'s summary and the trainer's progressive NDCG). Ties rank the lower item id first.

public struct NextItemEvaluation: Sendable {
    public var ndcg = 0.0, hitRate = 0.0
    /// Held-out events scored.
    public var events = 0
    /// Lines refused (malformed) in the held-out and history files.
    public var rejected = 0
    public var rejectedByReason: [String: Int] = [:]
    /// Held-out events whose true item the model has no id for.
    public var unknownItems = 0
    /// Held-out events whose user the model has no id for (scored with a zero user row).
    public var unknownUsers = 0
    /// The popularity baseline (items ranked by their event count in the history, consumed
    /// items masked; ties: shorter key first, then by bytes — numeric order for decimal ids);
    /// nil without a history.
    public var popularityNDCG: Double?, popularityHitRate: Double?
    public var historyEvents = 0
}

public enum NextItemEvaluator {
    public static let cutoff = 10

    /// Evaluates `model` (with the keys of its ids) on the held-out events in `path`, states from
    /// the events in `historyPath` (if any). `onReject` sees every refused line (file, rejection).
    public static func evaluate(model: any NextItemScorer, keys: BehaviorKeys, path: String, historyPath: String?,
                                batchSize: Int = 256, onReject: ((String, LineRejection) -> Void)? = nil) throws -> NextItemEvaluation {
        let H = model.historyLength, N = model.itemCount
        var result = NextItemEvaluation()
        let parser = BehaviorParser()
        // Per user key: recent items (item keys, the last H) and the consumed set.
        var recent: [String: [String]] = [:]
        var consumed: [String: Set<String>] = [:]
        var counts: [String: Int] = [:]
        func consume(_ user: String, _ item: String) {
            var r = recent[user, default: []]
            r.append(item)
            if r.count > H { r.removeFirst(r.count - H) }
            recent[user] = r
            consumed[user, default: []].insert(item)
        }
        func read(_ file: String, _ body: (String, String) throws -> Void) throws {
            try LineReader(path: file, maxLineLength: parser.maxLineLength).forEachLine { line, number in
                let e: BehaviorEvent
                do throws(RowRejection) { e = try parser.parse(line) } catch {
                    let r = LineRejection(line: number, rejection: error)
                    result.rejected += 1
                    result.rejectedByReason[r.rejection.reason.rawValue, default: 0] += 1
                    onReject?(file, r)
                    return
                }
                try body(String(decoding: UnsafeRawBufferPointer(rebasing: line[e.user]), as: UTF8.self),
                         String(decoding: UnsafeRawBufferPointer(rebasing: line[e.item]), as: UTF8.self))
            }
        }
        if let historyPath {
            try read(historyPath) { u, i in consume(u, i); counts[i, default: 0] += 1; result.historyEvents += 1 }
        }
        let popularOrder = counts.keys.sorted {
            let a = counts[$0]!, b = counts[$1]!
            if a != b { return a > b }
            return $0.utf8.count != $1.utf8.count ? $0.utf8.count < $1.utf8.count : $0 < $1
        }
        var popularity = (ndcg: 0.0, hit: 0.0)

        // Held-out events in file order: each is scored from its user's state, then consumed.
        struct Pending { var user: String; var item: String; var consumed: Set<String> }
        var batch: [Pending] = [], users: [Int32] = [], histories: [Int32] = []
        func flush() {
            guard !batch.isEmpty else { return }
            let scores = model.scores(users: users, histories: histories)
            for (b, e) in batch.enumerated() {
                guard let target = keys.items.id(e.item), Int(target) < N, target >= 2 else { result.unknownItems += 1; continue }
                if e.consumed.contains(e.item) { continue }
                let row = b * N, zt = scores[row + Int(target)]
                var masked = Set<Int32>()
                for k in e.consumed { if let id = keys.items.id(k) { masked.insert(id) } }
                var rank = 1
                for j in 2..<N where j != Int(target) && !masked.contains(Int32(j)) {
                    let z = scores[row + j]
                    if z > zt || (z == zt && j < Int(target)) { rank += 1 }
                }
                result.ndcg += RankingMetrics.ndcg(rank: rank, k: cutoff)
                result.hitRate += RankingMetrics.hitRate(rank: rank, k: cutoff)
            }
            batch.removeAll(keepingCapacity: true); users.removeAll(keepingCapacity: true); histories.removeAll(keepingCapacity: true)
        }
        try read(path) { u, i in
            result.events += 1
            let seen = consumed[u] ?? []
            if historyPath != nil {
                let shown = popularOrder.lazy.filter { !seen.contains($0) }.prefix(cutoff)
                let rank = RankingMetrics.rank(of: i, in: shown)
                popularity.ndcg += RankingMetrics.ndcg(rank: rank, k: cutoff)
                popularity.hit += RankingMetrics.hitRate(rank: rank, k: cutoff)
            }
            let uid = keys.users.id(u)
            if uid == nil { result.unknownUsers += 1 }
            users.append(uid ?? 0)
            let r = recent[u] ?? []
            for _ in 0..<(H - r.count) { histories.append(TransitionBatch.paddingItem) }
            for k in r { histories.append(keys.items.id(k) ?? 1) }
            batch.append(Pending(user: u, item: i, consumed: seen))
            consume(u, i)
            if batch.count >= batchSize { flush() }
        }
        flush()
        let n = Double(max(result.events, 1))
        result.ndcg /= n; result.hitRate /= n
        if historyPath != nil { result.popularityNDCG = popularity.ndcg / n; result.popularityHitRate = popularity.hit / n }
        return result
    }
}
