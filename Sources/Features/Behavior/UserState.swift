// UserState: what the behaviour pipeline keeps per user (in sr:rl:user, committed with the
// featurize progress) and what /v1/recommend reads: the recent items, the consumed set, and the
// user's newest event whose transition is not emitted yet.

/// One user's state. Items are item ids (`BehaviorIdSpace.items`).
public struct UserState: Sendable, Equatable {
    /// The last H+1 items consumed, oldest first (H+1 so the pending event's state — the H items
    /// before it — can be rebuilt). `recent(_:)` is the state a policy sees.
    public var history: [Int32] = []
    /// The last C distinct items consumed, least recent first (a re-consumed item moves to the end).
    public var consumed: [Int32] = []
    /// The newest event (its action is `history.last`) while its transition waits for the
    /// user's next event or the event-time watermark.
    public var pending: Pending? = nil

    public struct Pending: Sendable, Equatable {
        public var time: Int64
        public var reward: Float
        public init(time: Int64, reward: Float) { self.time = time; self.reward = reward }
    }

    public init(history: [Int32] = [], consumed: [Int32] = [], pending: Pending? = nil) {
        self.history = history; self.consumed = consumed; self.pending = pending
    }

    /// The last `h` items, oldest first (fewer when the user has consumed fewer).
    public func recent(_ h: Int) -> ArraySlice<Int32> { history.suffix(h) }

    /// Adds a consumed item: appended to the history (keeping `h + 1`) and to the consumed set
    /// (moved to the end if present; the least recent dropped beyond `limit`).
    public mutating func consume(_ item: Int32, historyLength h: Int, consumedLimit limit: Int) {
        history.append(item)
        if history.count > h + 1 { history.removeFirst(history.count - (h + 1)) }
        if let k = consumed.lastIndex(of: item) { consumed.remove(at: k) }
        consumed.append(item)
        if consumed.count > limit { consumed.removeFirst(consumed.count - limit) }
    }

    /// The state before the newest item: the `h` items before `history.last`, padded in front
    /// with `TransitionBatch.paddingItem`.
    public func stateBeforeLast(_ h: Int, into out: inout [Int32]) {
        out.removeAll(keepingCapacity: true)
        let before = history.dropLast().suffix(h)
        for _ in 0..<(h - before.count) { out.append(TransitionBatch.paddingItem) }
        out.append(contentsOf: before)
    }

    // MARK: Encoding (little-endian)
    //   u8 version = 1, u8 history count, u16 consumed count, u8 pending flag,
    //   [i64 pending time, f32 pending reward], i32 history[], i32 consumed[]

    public func encoded() -> [UInt8] {
        let h = min(history.count, 255), c = min(consumed.count, 65535)
        let n = 5 + (pending == nil ? 0 : 12) + 4 * (h + c)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            buf[0] = 1
            buf[1] = UInt8(h)
            buf[2] = UInt8(truncatingIfNeeded: c); buf[3] = UInt8(truncatingIfNeeded: c >> 8)
            buf[4] = pending == nil ? 0 : 1
            var p = 5
            func put<T: FixedWidthInteger>(_ v: T) {
                var x = v.littleEndian
                withUnsafeBytes(of: &x) { for b in $0 { buf[p] = b; p += 1 } }
            }
            if let pending { put(pending.time); put(pending.reward.bitPattern) }
            for v in history.prefix(h) { put(v) }
            for v in consumed.prefix(c) { put(v) }
            count = p
        }
    }

    /// Decodes `encoded()`; throws a message naming what is wrong.
    public static func decode(_ bytes: [UInt8]) throws(UserStateError) -> UserState {
        guard bytes.count >= 5, bytes[0] == 1 else {
            throw UserStateError("user state of \(bytes.count) bytes with version \(bytes.first.map(String.init) ?? "none") (expected version 1)")
        }
        let h = Int(bytes[1]), c = Int(bytes[2]) | Int(bytes[3]) << 8, hasPending = bytes[4] == 1
        let expected = 5 + (hasPending ? 12 : 0) + 4 * (h + c)
        guard bytes.count == expected, bytes[4] <= 1 else {
            throw UserStateError("user state of \(bytes.count) bytes, its header describes \(expected)")
        }
        var p = 5
        func i64() -> Int64 { var v: Int64 = 0; for k in 0..<8 { v |= Int64(bytes[p + k]) << (8 * Int64(k)) }; p += 8; return v }
        func u32() -> UInt32 { var v: UInt32 = 0; for k in 0..<4 { v |= UInt32(bytes[p + k]) << (8 * UInt32(k)) }; p += 4; return v }
        var s = UserState()
        if hasPending {
            let t = i64()
            s.pending = Pending(time: t, reward: Float(bitPattern: u32()))
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
/// readers so both produce the same transitions: a user's event turns the previous (pending)
/// event into a transition — done when this event came more than the session gap later — is
/// consumed (history, consumed set) and becomes the pending event.
public struct TransitionRule: Sendable, Equatable {
    public var historyLength: Int
    public var consumedLimit: Int
    public var sessionGapSeconds: Int64
    /// Reward per behaviour (pv, cart, fav, buy).
    public var rewards: [Float]

    public init(historyLength: Int = 10, consumedLimit: Int = 100, sessionGapSeconds: Int64 = 3600, rewards: [Float] = [1, 2, 2, 3]) {
        self.historyLength = historyLength; self.consumedLimit = consumedLimit
        self.sessionGapSeconds = sessionGapSeconds; self.rewards = rewards
    }

    @inline(__always)
    public func reward(_ b: Behavior) -> Float { rewards[Int(b.rawValue)] }

    /// Applies one event of `user`: appends the transition of the user's previous event (if any)
    /// to `out`, then consumes the item and makes the event pending.
    @inline(__always)
    public func apply(user: Int32, item: Int32, behavior: Behavior, time: Int64, to state: inout UserState,
                      into out: inout TransitionBatch, scratch: inout [Int32]) {
        if let pending = state.pending {
            emit(user: user, state, pending, done: time - pending.time > sessionGapSeconds, into: &out, scratch: &scratch)
        }
        state.consume(item, historyLength: historyLength, consumedLimit: consumedLimit)
        state.pending = UserState.Pending(time: time, reward: reward(behavior))
    }

    /// Ends the episode of the user's pending event (its successor, if any, comes after the gap):
    /// appends its transition with done = true. Nothing when no event is pending.
    public func release(user: Int32, _ state: inout UserState, into out: inout TransitionBatch, scratch: inout [Int32]) {
        guard let pending = state.pending else { return }
        emit(user: user, state, pending, done: true, into: &out, scratch: &scratch)
        state.pending = nil
    }

    @inline(__always)
    func emit(user: Int32, _ state: UserState, _ pending: UserState.Pending, done: Bool, into out: inout TransitionBatch, scratch: inout [Int32]) {
        state.stateBeforeLast(historyLength, into: &scratch)
        // A pending event's item is the last in the history (1, the item OOV id, cannot occur).
        out.append(user: user, state: scratch, action: state.history.last ?? 1, reward: pending.reward, done: done, time: pending.time)
    }
}
