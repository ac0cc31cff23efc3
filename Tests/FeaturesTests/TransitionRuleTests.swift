import Features
import Testing

// The transition rule against a reference written from its definition (not its algorithm): per
// user, the sessions of the whole sequence are known up front, so each event's transition — its
// state, rewards row, done flag, and the operation that emits it — is computed directly.

@Suite("transition rule: reward windows")
struct TransitionRuleTests {
    enum Op { case event(user: Int32, item: Int32, behavior: Behavior, time: Int64), release(user: Int32) }

    struct Emitted: Equatable, CustomStringConvertible {
        var op: Int, user: Int32, state: [Int32], action: Int32, rewards: [Float], done: Bool, time: Int64
        var description: String { "op \(op) user \(user) \(state)→\(action) r\(rewards) done \(done) t\(time)" }
    }

    /// A random sequence: a few users, times rising by 1…`3·gap/2` (so some steps pass the gap),
    /// releases now and then (as the watermark would).
    static func sequence(seed: UInt64, count: Int, gap: Int64) -> [Op] {
        var rng = RuleRNG(seed)
        var clock: [Int32: Int64] = [:]
        var ops: [Op] = []
        for _ in 0..<count {
            let user = Int32(rng.next() % 4) + 1
            if rng.next() % 10 == 0 { ops.append(.release(user: user)); continue }
            let t = (clock[user] ?? 1_000) + Int64(rng.next() % UInt64(gap * 3 / 2)) + 1
            clock[user] = t
            ops.append(.event(user: user, item: Int32(rng.next() % 20) + 2, behavior: Behavior(rawValue: UInt8(rng.next() % 4))!, time: t))
        }
        return ops
    }

    /// What the rule must emit, from the definition. The end of `ops` releases every user (in user order).
    static func reference(_ ops: [Op], rule: TransitionRule) -> [Emitted] {
        struct Event { var op: Int, item: Int32, reward: Float, time: Int64, index: Int }
        // Per user: every item (for states) and the sessions, each with the op that ended it.
        var items: [Int32: [Int32]] = [:]
        var open: [Int32: [Event]] = [:]
        var sessions: [(user: Int32, events: [Event], endOp: Int)] = []
        let endOp = ops.count
        for (k, op) in ops.enumerated() {
            switch op {
            case let .event(user, item, behavior, time):
                if let last = open[user]?.last, time - last.time > rule.sessionGapSeconds {
                    sessions.append((user, open[user]!, k)); open[user] = []
                }
                open[user, default: []].append(Event(op: k, item: item, reward: rule.reward(behavior), time: time, index: items[user, default: []].count))
                items[user, default: []].append(item)
            case let .release(user):
                if let s = open[user], !s.isEmpty { sessions.append((user, s, k)); open[user] = [] }
            }
        }
        for user in open.keys.sorted() where !open[user]!.isEmpty { sessions.append((user, open[user]!, endOp)) }
        let H = rule.historyLength, W = rule.rewardWindow
        var out: [(Emitted, Int, Int32)] = []   // with the user's rank among end-of-input releases
        for (user, events, end) in sessions {
            for (k, e) in events.enumerated() {
                let before = items[user]![..<e.index].suffix(H)
                let state = Array(repeating: TransitionBatch.paddingItem, count: H - before.count) + before
                var row = events[k..<min(k + W, events.count)].map(\.reward)
                row += Array(repeating: 0, count: W - row.count)
                // Emitted when the event completing its window (and at least its successor) arrives, else at the session's end.
                let completing = k + max(W, 2) - 1
                let op = completing < events.count ? events[completing].op : end
                out.append((Emitted(op: op, user: user, state: state, action: e.item, rewards: row, done: k == events.count - 1, time: e.time),
                            k, user))
            }
        }
        // Within one op: one user's transitions (in event order); at the end, users in order.
        return out.sorted { ($0.0.op, $0.2, $0.1) < ($1.0.op, $1.2, $1.1) }.map(\.0)
    }

    static func run(_ ops: [Op], rule: TransitionRule) -> (emitted: [Emitted], batch: TransitionBatch) {
        var states: [Int32: UserState] = [:]
        var all = rule.emptyBatch(), out = rule.emptyBatch()
        var scratch: [Int32] = []
        var emitted: [Emitted] = []
        func collect(_ op: Int) {
            for b in 0..<out.count {
                emitted.append(Emitted(op: op, user: out.users[b], state: Array(out.state(b)), action: out.actions[b],
                                       rewards: Array(out.rewardRow(b)), done: out.done[b], time: out.times[b]))
                all.append(user: out.users[b], state: out.state(b), action: out.actions[b], rewards: out.rewardRow(b), done: out.done[b], time: out.times[b])
            }
            out.removeAll()
        }
        for (k, op) in ops.enumerated() {
            switch op {
            case let .event(user, item, behavior, time):
                rule.apply(user: user, item: item, behavior: behavior, time: time, to: &states[user, default: UserState()], into: &out, scratch: &scratch)
            case let .release(user):
                rule.release(user: user, &states[user, default: UserState()], into: &out, scratch: &scratch)
            }
            collect(k)
            // The queue never holds a full window, and the history is bounded by H + W.
            for s in states.values {
                #expect(s.pending.count < max(rule.rewardWindow, 2) && s.history.count <= rule.historyLength + rule.rewardWindow)
            }
        }
        for user in states.keys.sorted() { rule.release(user: user, &states[user]!, into: &out, scratch: &scratch) }
        collect(ops.count)
        return (emitted, all)
    }

    @Test("every event yields one transition: state, rewards row, done and emission as defined", arguments: [1, 2, 3, 5])
    func matchesReference(window: Int) {
        for seed: UInt64 in 1...20 {
            let rule = TransitionRule(historyLength: 3, consumedLimit: 5, sessionGapSeconds: 100, rewards: [1, 2, 3, 4], rewardWindow: window)
            let ops = Self.sequence(seed: seed, count: 200, gap: 100)
            let got = Self.run(ops, rule: rule).emitted, want = Self.reference(ops, rule: rule)
            let events = ops.filter { if case .event = $0 { true } else { false } }.count
            #expect(got.count == events)
            let first = got.indices.first { $0 >= want.count || got[$0] != want[$0] } ?? got.count
            #expect(got == want, "W \(window) seed \(seed): first difference at #\(first): \(first < got.count ? "\(got[first])" : "-") vs \(first < want.count ? "\(want[first])" : "-")")
        }
    }

    @Test("a hand-written session: W = 3, a gap, then a release")
    func handWritten() {
        let rule = TransitionRule(historyLength: 2, sessionGapSeconds: 10, rewards: [1, 2, 3, 4], rewardWindow: 3)
        let ops: [Op] = [.event(user: 1, item: 2, behavior: .pv, time: 0), .event(user: 1, item: 3, behavior: .cart, time: 5),
                         .event(user: 1, item: 4, behavior: .fav, time: 6),      // completes item 2's window
                         .event(user: 1, item: 5, behavior: .buy, time: 100),    // after the gap: 3 and 4 emitted
                         .event(user: 1, item: 6, behavior: .pv, time: 101), .release(user: 1)]
        let got = Self.run(ops, rule: rule).emitted
        #expect(got == [
            Emitted(op: 2, user: 1, state: [0, 0], action: 2, rewards: [1, 2, 3], done: false, time: 0),
            Emitted(op: 3, user: 1, state: [0, 2], action: 3, rewards: [2, 3, 0], done: false, time: 5),
            Emitted(op: 3, user: 1, state: [2, 3], action: 4, rewards: [3, 0, 0], done: true, time: 6),
            Emitted(op: 5, user: 1, state: [3, 4], action: 5, rewards: [4, 1, 0], done: false, time: 100),
            Emitted(op: 5, user: 1, state: [4, 5], action: 6, rewards: [1, 0, 0], done: true, time: 101),
        ])
    }

    @Test("W = 1 emits what the rule did before reward windows")
    func windowOneIsTheOldRule() {
        // The old rule: an event emits the user's previous one (done after the gap); release emits it done.
        func old(_ ops: [Op], _ rule: TransitionRule) -> TransitionBatch {
            var last: [Int32: (time: Int64, reward: Float)] = [:]
            var items: [Int32: [Int32]] = [:]
            var out = TransitionBatch(historyLength: rule.historyLength)
            func emit(_ user: Int32, done: Bool) {
                guard let p = last[user] else { return }
                let h = items[user]!, before = h.dropLast().suffix(rule.historyLength)
                out.append(user: user, state: Array(repeating: 0, count: rule.historyLength - before.count) + before, action: h.last!,
                           reward: p.reward, done: done, time: p.time)
                last[user] = nil
            }
            for op in ops {
                switch op {
                case let .event(user, item, behavior, time):
                    if let p = last[user] { emit(user, done: time - p.time > rule.sessionGapSeconds) }
                    items[user, default: []].append(item)
                    last[user] = (time, rule.reward(behavior))
                case let .release(user): emit(user, done: true)
                }
            }
            for user in last.keys.sorted() { emit(user, done: true) }
            return out
        }
        for seed: UInt64 in 1...20 {
            let rule = TransitionRule(historyLength: 4, sessionGapSeconds: 100, rewardWindow: 1)
            let ops = Self.sequence(seed: seed, count: 200, gap: 100)
            #expect(Self.run(ops, rule: rule).batch == old(ops, rule))
        }
    }

    @Test("discounted return: Σ γ^k r_k over the row; reward(b) is column 0; removeFirst keeps the shape")
    func returns() {
        var t = TransitionBatch(historyLength: 1, rewardWindow: 3)
        t.append(user: 1, state: [0], action: 2, rewards: [1, 2, 3], done: false, time: 0)
        t.append(user: 1, state: [2], action: 3, rewards: [2], done: true, time: 1)
        #expect(t.rewards == [1, 2, 3, 2, 0, 0])
        #expect(t.reward(0) == 1 && t.reward(1) == 2)
        #expect(abs(t.discountedReturn(0, gamma: 0.5) - (1 + 0.5 * 2 + 0.25 * 3)) < 1e-6 && t.discountedReturn(1, gamma: 0.5) == 2)
        var rest = t
        let head = rest.removeFirst(1)
        #expect(head.rewards == [1, 2, 3] && head.rewardWindow == 3 && rest.rewards == [2, 0, 0] && rest.actions == [3])
    }
}

private struct RuleRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
