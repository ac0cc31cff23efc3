// UserState: what the behaviour pipeline keeps per user (in sr:rl:user, committed with the
// featurize progress) and what /v1/recommend reads: the recent items, the consumed set, and the
// user's newest events whose transitions are not emitted yet (their returns wait for successors).

/// One user's state. Items are item ids (`BehaviorIdSpace.items`).
public struct UserState: Sendable, Equatable {
    /// The last H+W items consumed, oldest first (H+W so the state of the oldest pending event —
    /// the H items before it — can be rebuilt). `recent(_:)` is the state a policy sees.
    public var history: [Int32] = []
    /// The last C distinct items consumed, least recent first (a re-consumed item moves to the end).
    public var consumed: [Int32] = []
    /// The newest events, oldest first, whose transitions wait for their successors' rewards
    /// (`TransitionRule.rewardWindow`) or the event-time watermark. Their actions are the last
    /// `pending.count` items of `history`.
    public var pending: [Pending] = []

    public struct Pending: Sendable, Equatable {
        public var time: Int64
        public var reward: Float
        public init(time: Int64, reward: Float) { self.time = time; self.reward = reward }
    }

    public init(history: [Int32] = [], consumed: [Int32] = [], pending: [Pending] = []) {
        self.history = history; self.consumed = consumed; self.pending = pending
    }

    /// The last `h` items, oldest first (fewer when the user has consumed fewer).
    public func recent(_ h: Int) -> ArraySlice<Int32> { history.suffix(h) }

    /// Adds a consumed item: appended to the history (keeping `h + window`) and to the consumed
    /// set (moved to the end if present; the least recent dropped beyond `limit`).
    public mutating func consume(_ item: Int32, historyLength h: Int, rewardWindow window: Int = 1, consumedLimit limit: Int) {
        history.append(item)
        let keep = h + max(window, 1)
        if history.count > keep { history.removeFirst(history.count - keep) }
        if let k = consumed.lastIndex(of: item) { consumed.remove(at: k) }
        consumed.append(item)
        if consumed.count > limit { consumed.removeFirst(consumed.count - limit) }
    }

    /// The state before the newest item: the `h` items before `history.last`, padded in front
    /// with `TransitionBatch.paddingItem`.
    public func stateBeforeLast(_ h: Int, into out: inout [Int32]) {
        stateBefore(history.count - 1, h, into: &out)
    }

    /// The state before `history[index]`: the `h` items before it, padded in front.
    public func stateBefore(_ index: Int, _ h: Int, into out: inout [Int32]) {
        out.removeAll(keepingCapacity: true)
        let before = history[..<max(index, 0)].suffix(h)
        for _ in 0..<(h - before.count) { out.append(TransitionBatch.paddingItem) }
        out.append(contentsOf: before)
    }

    // MARK: Encoding (little-endian)
    //   version 2: u8 version = 2, u8 history count, u16 consumed count, u8 pending count P,
    //              P × [i64 time, f32 reward] (oldest first), i32 history[], i32 consumed[]
    //   version 1 (read only): the same with a pending flag 0/1 instead of P — a queue of one.

    public static let encodingVersion: UInt8 = 2

    public func encoded() -> [UInt8] {
        let h = min(history.count, 255), c = min(consumed.count, 65535), q = min(pending.count, 255)
        let n = 5 + 12 * q + 4 * (h + c)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            buf[0] = Self.encodingVersion
            buf[1] = UInt8(h)
            buf[2] = UInt8(truncatingIfNeeded: c); buf[3] = UInt8(truncatingIfNeeded: c >> 8)
            buf[4] = UInt8(q)
            var p = 5
            func put<T: FixedWidthInteger>(_ v: T) {
                var x = v.littleEndian
                withUnsafeBytes(of: &x) { for b in $0 { buf[p] = b; p += 1 } }
            }
            // The newest pending events matter (the oldest are emitted first), as do the newest items.
            for e in pending.suffix(q) { put(e.time); put(e.reward.bitPattern) }
            for v in history.suffix(h) { put(v) }
            for v in consumed.suffix(c) { put(v) }
            count = p
        }
    }

    /// Decodes `encoded()` (version 2) or a version-1 state; throws a message naming what is wrong.
    public static func decode(_ bytes: [UInt8]) throws(UserStateError) -> UserState {
        guard bytes.count >= 5, bytes[0] == 1 || bytes[0] == 2 else {
            throw UserStateError("user state of \(bytes.count) bytes with version \(bytes.first.map(String.init) ?? "none") "
                                 + "(this streamrec reads versions 1 and 2: upgrade it to the build of the feature workers)")
        }
        let h = Int(bytes[1]), c = Int(bytes[2]) | Int(bytes[3]) << 8, q = Int(bytes[4])
        guard bytes[0] == 2 || q <= 1 else {
            throw UserStateError("user state of version 1 with pending flag \(q) (expected 0 or 1); the entry is corrupt")
        }
        let expected = 5 + 12 * q + 4 * (h + c)
        guard bytes.count == expected else {
            throw UserStateError("user state of \(bytes.count) bytes, its header describes \(expected)")
        }
        var p = 5
        func i64() -> Int64 { var v: Int64 = 0; for k in 0..<8 { v |= Int64(bytes[p + k]) << (8 * Int64(k)) }; p += 8; return v }
        func u32() -> UInt32 { var v: UInt32 = 0; for k in 0..<4 { v |= UInt32(bytes[p + k]) << (8 * UInt32(k)) }; p += 4; return v }
        var s = UserState()
        s.pending.reserveCapacity(q)
        for _ in 0..<q {
            let t = i64()
            s.pending.append(Pending(time: t, reward: Float(bitPattern: u32())))
        }
        s.history = (0..<h).map { _ in Int32(bitPattern: u32()) }
        s.consumed = (0..<c).map { _ in Int32(bitPattern: u32()) }
        return s
    }
}

public struct UserStateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Decimal digits of `v` (ids, counts and scores in Redis arguments), without a String.
public func decimalBytes(_ v: Int64) -> [UInt8] {
    if v == 0 { return [0x30] }
    var x = v.magnitude
    var digits: [UInt8] = []
    digits.reserveCapacity(20)
    while x > 0 { digits.append(UInt8(x % 10) + 0x30); x /= 10 }
    if v < 0 { digits.append(0x2D) }
    digits.reverse()
    return digits
}

/// The per-user rule of the behaviour pipeline, shared by the feature workers and offline
/// readers so both produce the same transitions. A user's event is consumed (history, consumed
/// set) and queued as pending; a transition carries the rewards of its action and of the next
/// W−1 events of the same session (the return's window), so an event's transition is emitted
/// once W−1 successors are known (and at least one, which decides done = false). An event more
/// than the session gap after the user's previous one, or the watermark (`release`), ends the
/// session: every pending event is emitted, in order, with the rewards its queue still holds
/// then zeros, the last one done. W = 1 emits each event at its successor, as before returns.
public struct TransitionRule: Sendable, Equatable {
    public var historyLength: Int
    public var consumedLimit: Int
    public var sessionGapSeconds: Int64
    /// Reward per behaviour (pv, cart, fav, buy).
    public var rewards: [Float]
    /// W: rewards per transition (its own, then its W−1 successors' in the session).
    public var rewardWindow: Int

    public init(historyLength: Int = 10, consumedLimit: Int = 100, sessionGapSeconds: Int64 = 3600, rewards: [Float] = [1, 2, 2, 3],
                rewardWindow: Int = 1) {
        self.historyLength = historyLength; self.consumedLimit = consumedLimit
        self.sessionGapSeconds = sessionGapSeconds; self.rewards = rewards
        self.rewardWindow = max(rewardWindow, 1)
    }

    @inline(__always)
    public func reward(_ b: Behavior) -> Float { rewards[Int(b.rawValue)] }

    /// Applies one event of `user`: a session gap before it emits the user's pending events;
    /// otherwise the oldest pending event is emitted if this event completes its window. Then
    /// the item is consumed and the event queued.
    @inline(__always)
    public func apply(user: Int32, item: Int32, behavior: Behavior, time: Int64, to state: inout UserState,
                      into out: inout TransitionBatch, scratch: inout [Int32]) {
        let r = reward(behavior)
        if let last = state.pending.last, time - last.time > sessionGapSeconds {
            release(user: user, &state, into: &out, scratch: &scratch)
        } else {
            // Emitted before this item is consumed, so the history needs only H + W items.
            // (W = 1 still waits for the successor: it decides done.) A loop, not an if, only
            // for a state queued under a larger W.
            while state.pending.count + 1 >= max(rewardWindow, 2) {
                emit(user: user, state, index: 0, next: r, done: false, into: &out, scratch: &scratch)
                state.pending.removeFirst()
            }
        }
        state.consume(item, historyLength: historyLength, rewardWindow: rewardWindow, consumedLimit: consumedLimit)
        state.pending.append(UserState.Pending(time: time, reward: r))
    }

    /// Ends the session of the user's pending events (whatever comes next comes after the gap):
    /// appends their transitions in order, the last with done = true. Nothing when none is pending.
    public func release(user: Int32, _ state: inout UserState, into out: inout TransitionBatch, scratch: inout [Int32]) {
        let n = state.pending.count
        for i in 0..<n { emit(user: user, state, index: i, done: i == n - 1, into: &out, scratch: &scratch) }
        state.pending.removeAll(keepingCapacity: true)
    }

    /// Appends pending event `i`'s transition: its action is history[count − n + i], its rewards
    /// those of pending[i ..< i + W], then `next` (the event being applied) if the window reaches
    /// it, then zeros (the session ended).
    @inline(__always)
    func emit(user: Int32, _ state: UserState, index i: Int, next: Float? = nil, done: Bool,
              into out: inout TransitionBatch, scratch: inout [Int32]) {
        let n = state.pending.count, at = state.history.count - n + i
        state.stateBefore(at, historyLength, into: &scratch)
        // 1 (the item OOV id) cannot occur: the history holds H + W ≥ n items.
        let action = at >= 0 ? state.history[at] : 1
        let upper = min(i + rewardWindow, n)
        out.append(user: user, state: scratch, action: action, pending: state.pending[i..<upper],
                   next: upper - i < rewardWindow ? next : nil, done: done, time: state.pending[i].time)
    }

    /// An empty batch of this rule's shape (history length, reward window).
    public func emptyBatch() -> TransitionBatch { TransitionBatch(historyLength: historyLength, rewardWindow: rewardWindow) }
}
